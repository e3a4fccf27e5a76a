//! The series and samples of a Prometheus remote-write 1.0 `WriteRequest`
//! (prompb/remote.proto, types.proto), read from its decompressed bytes.
//!
//! The Python adapter (`adapters.prometheus.remote_write`) reads each sample
//! through a parsed message, about 7 CPU-us per sample; this walk gives flat
//! columns per series and per sample, with the same protobuf rules as the OTLP
//! walk (every occurrence of a repeated field is an element, the last
//! occurrence of a scalar wins, a field with an unexpected wire type is
//! skipped). A series is identified by a keyed 128-bit SipHash-1-3 of its raw
//! Label encodings, as an OTLP attribute set is; its label spans come back for
//! series met for the first time.

use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::{Keys, Malformed, Reader, FIXED64, LEN, VARINT};

const REQUEST_TIMESERIES: u32 = 1;
const SERIES_LABELS: u32 = 1;
const SERIES_SAMPLES: u32 = 2;
const SERIES_HISTOGRAMS: u32 = 4;
const SAMPLE_VALUE: u32 = 1;
const SAMPLE_TIMESTAMP: u32 = 2;

/// Series in request order, and their samples in order.
#[derive(Default, Debug, PartialEq)]
pub struct Series {
    /// Per series: how many samples and native histograms it has.
    pub samples: Vec<u32>,
    pub histograms: Vec<u32>,
    /// Two per series: the 128-bit key of its labels.
    pub hash: Vec<u64>,
    /// Per series: its first label in `label_offset`/`label_len`, and how many it has.
    pub label_first: Vec<u32>,
    pub label_count: Vec<u32>,
    /// Per label: where its Label encoding sits in the request, and its length.
    pub label_offset: Vec<u32>,
    pub label_len: Vec<u32>,
    /// Per sample.
    pub value: Vec<f64>,
    pub timestamp: Vec<i64>,
}

pub fn write_request(request: &[u8], keys: &Keys) -> Result<Series, Malformed> {
    if request.len() > u32::MAX as usize {
        return Err(Malformed("request over 4 GiB"));
    }
    let mut out = Series::default();
    let mut r = Reader::new(request, 0);
    while r.more() {
        match r.tag()? {
            (REQUEST_TIMESERIES, LEN) => series(r.nested()?, &mut out, keys)?,
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(out)
}

fn series(mut r: Reader, out: &mut Series, keys: &Keys) -> Result<(), Malformed> {
    let (first_label, first_sample) = (out.label_offset.len(), out.value.len());
    let mut histograms = 0u32;
    let mut hash = SipHasher13::new_with_keys(keys.0, keys.1);
    while r.more() {
        match r.tag()? {
            (SERIES_LABELS, LEN) => {
                let (at, body) = r.delimited()?;
                out.label_offset.push(at as u32);
                out.label_len.push(body.len() as u32);
                hash.write_u64(body.len() as u64);
                hash.write(body);
            }
            (SERIES_SAMPLES, LEN) => sample(r.nested()?, out)?,
            (SERIES_HISTOGRAMS, LEN) => {
                r.delimited()?;
                histograms += 1;
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    let both = hash.finish128();
    out.hash.extend([both.h1, both.h2]);
    out.samples.push((out.value.len() - first_sample) as u32);
    out.histograms.push(histograms);
    out.label_first.push(first_label as u32);
    out.label_count.push((out.label_offset.len() - first_label) as u32);
    Ok(())
}

fn sample(mut r: Reader, out: &mut Series) -> Result<(), Malformed> {
    let (mut value, mut timestamp) = (0f64, 0i64);
    while r.more() {
        match r.tag()? {
            (SAMPLE_VALUE, FIXED64) => value = f64::from_bits(r.fixed64()?),
            (SAMPLE_TIMESTAMP, VARINT) => timestamp = r.varint()? as i64,
            (_, wire) => r.skip(wire)?,
        }
    }
    out.value.push(value);
    out.timestamp.push(timestamp);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process_keys;

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        for bytes in [&[0x0a, 0x05, 0x0a][..], &[0x0a][..], &[0x0a, 0x02, 0x12, 0x05][..]] {
            assert!(write_request(bytes, process_keys()).is_err());
        }
    }

    #[test]
    fn a_sample_without_fields_is_zero_at_zero() {
        // timeseries { samples {} }
        let out = write_request(&[0x0a, 0x02, 0x12, 0x00], process_keys()).unwrap();
        assert_eq!((out.samples, out.value, out.timestamp), (vec![1], vec![0.0], vec![0]));
    }
}
