//! The gauge and sum points of an OTLP `ExportMetricsServiceRequest`, read
//! straight from its wire bytes into flat columns.
//!
//! The Python walk (`adapters.otlp.metrics`) costs about 3.5 CPU-us per point,
//! most of it attribute access on parsed messages; this walk reads the same
//! fields from the bytes, with the GIL released. It follows protobuf's rules as
//! the parser the Python path uses does: a repeated field's every occurrence is
//! an element, a scalar's last occurrence wins, a oneof member replaces the
//! member before it and merges into an earlier occurrence of itself, and a
//! field with an unexpected wire type is an unknown field, skipped. Anything it
//! cannot read (a truncated field, a group) is an error, and the caller then
//! takes the Python path, so the two can only differ by being compared: the
//! tests do, on recorded and generated requests.
//!
//! Attribute sets are identified by a keyed 128-bit SipHash-1-3 of their raw
//! KeyValue encodings (length, then bytes, for each), with keys drawn at random
//! per process: a sender cannot aim a collision at a set it does not know the
//! keys for. The raw spans come back too, for sets seen for the first time.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use pyo3::exceptions::PyValueError;
use siphasher::sip128::{Hasher128, SipHasher13};

mod maps;
mod remote_write;
use pyo3::buffer::{Element, PyBuffer};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

// Field numbers, from opentelemetry/proto/{collector/,}metrics/v1/metrics*.proto.
const REQUEST_RESOURCE_METRICS: u32 = 1;
const RESOURCE_METRICS_SCOPE_METRICS: u32 = 2;
const SCOPE_METRICS_METRICS: u32 = 2;
const METRIC_GAUGE: u32 = 5;
const METRIC_SUM: u32 = 7;
const METRIC_HISTOGRAM: u32 = 9;
const METRIC_EXPONENTIAL_HISTOGRAM: u32 = 10;
const METRIC_SUMMARY: u32 = 11;
const NUMBERS_DATA_POINTS: u32 = 1;
const POINT_START_TIME: u32 = 2;
const POINT_TIME: u32 = 3;
const POINT_AS_DOUBLE: u32 = 4;
const POINT_EXEMPLARS: u32 = 5;
const POINT_AS_INT: u32 = 6;
const POINT_ATTRIBUTES: u32 = 7;
const POINT_FLAGS: u32 = 8;

pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
const FIXED32: u8 = 5;

#[derive(Debug, PartialEq)]
pub struct Malformed(pub &'static str);

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize, // where `buf` starts in the request
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    pub(crate) fn more(&self) -> bool {
        self.pos < self.buf.len()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or(Malformed("truncated varint"))?;
            self.pos += 1;
            value |= ((byte & 0x7f) as u64).wrapping_shl(shift);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(Malformed("varint longer than 10 bytes"))
    }

    pub(crate) fn tag(&mut self) -> Result<(u32, u8), Malformed> {
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field >= 1 << 29 {
            return Err(Malformed("field number out of range"));
        }
        Ok((field as u32, (key & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len()).ok_or(Malformed("truncated field"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, Malformed> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    /// A length-delimited field: its offset in the request, and its bytes.
    pub(crate) fn delimited(&mut self) -> Result<(usize, &'a [u8]), Malformed> {
        let n = usize::try_from(self.varint()?).map_err(|_| Malformed("length out of range"))?;
        let at = self.base + self.pos;
        Ok((at, self.take(n)?))
    }

    pub(crate) fn nested(&mut self) -> Result<Reader<'a>, Malformed> {
        let (at, body) = self.delimited()?;
        Ok(Reader::new(body, at))
    }

    pub(crate) fn skip(&mut self, wire: u8) -> Result<(), Malformed> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.delimited().map(drop),
            FIXED32 => self.take(4).map(drop),
            _ => Err(Malformed("group or unknown wire type")),
        }
    }
}

/// Gauge and sum points in request order, one entry per point in each column.
#[derive(Default, Debug, PartialEq)]
pub struct Points {
    /// Per metric in request order: how many of the points are its own (0 unless gauge or sum).
    pub counts: Vec<u32>,
    pub time: Vec<u64>,
    pub start: Vec<u64>,
    pub flags: Vec<u32>,
    pub value: Vec<f64>,
    pub has_value: Vec<u8>,
    /// Two per point: the attribute set's keyed hashes.
    pub hash: Vec<u64>,
    /// Per point: its first attribute in `kv_offset`/`kv_len`, and how many it has.
    pub kv_first: Vec<u32>,
    pub kv_count: Vec<u32>,
    /// Per attribute: where its KeyValue encoding sits in the request, and its length.
    pub kv_offset: Vec<u32>,
    pub kv_len: Vec<u32>,
}

impl Points {
    fn truncate(&mut self, points: usize, kvs: usize) {
        self.time.truncate(points);
        self.start.truncate(points);
        self.flags.truncate(points);
        self.value.truncate(points);
        self.has_value.truncate(points);
        self.hash.truncate(points * 2);
        self.kv_first.truncate(points);
        self.kv_count.truncate(points);
        self.kv_offset.truncate(kvs);
        self.kv_len.truncate(kvs);
    }
}

pub struct Keys(pub(crate) u64, pub(crate) u64);

pub fn process_keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    // RandomState draws its keys from the OS's randomness: two of its outputs are random keys.
    KEYS.get_or_init(|| {
        let random = RandomState::new();
        Keys(random.hash_one(1u64), random.hash_one(2u64))
    })
}

pub fn number_points(request: &[u8], keys: &Keys) -> Result<Points, Malformed> {
    if request.len() > u32::MAX as usize {
        return Err(Malformed("request over 4 GiB"));
    }
    let mut out = Points::default();
    each(Reader::new(request, 0), REQUEST_RESOURCE_METRICS, |resource_metrics| {
        each(resource_metrics, RESOURCE_METRICS_SCOPE_METRICS, |scope_metrics| {
            each(scope_metrics, SCOPE_METRICS_METRICS, |m| metric(m, &mut out, keys))
        })
    })?;
    Ok(out)
}

/// Read each occurrence of the message field `field` with `read`; skip every other field.
fn each(mut r: Reader, field: u32, mut read: impl FnMut(Reader) -> Result<(), Malformed>) -> Result<(), Malformed> {
    while r.more() {
        match r.tag()? {
            (f, LEN) if f == field => read(r.nested()?)?,
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(())
}

fn metric(mut r: Reader, out: &mut Points, keys: &Keys) -> Result<(), Malformed> {
    let (first_point, first_kv) = (out.time.len(), out.kv_offset.len());
    let mut member = 0;
    while r.more() {
        let (field, wire) = r.tag()?;
        let data = matches!(field, METRIC_GAUGE | METRIC_SUM | METRIC_HISTOGRAM | METRIC_EXPONENTIAL_HISTOGRAM | METRIC_SUMMARY);
        if !(data && wire == LEN) {
            r.skip(wire)?;
            continue;
        }
        let body = r.nested()?;
        if field != member {
            out.truncate(first_point, first_kv); // another member of the `data` oneof replaces this one
            member = field;
        }
        if field == METRIC_GAUGE || field == METRIC_SUM {
            each(body, NUMBERS_DATA_POINTS, |p| point(p, out, keys))?;
        }
    }
    out.counts.push((out.time.len() - first_point) as u32);
    Ok(())
}

fn point(mut r: Reader, out: &mut Points, keys: &Keys) -> Result<(), Malformed> {
    let (mut time, mut start, mut flags, mut value) = (0u64, 0u64, 0u32, None);
    let first_kv = out.kv_offset.len();
    // One 128-bit pass: two 64-bit hashers read every attribute twice (half the walker's time).
    let mut hash = SipHasher13::new_with_keys(keys.0, keys.1);
    while r.more() {
        match r.tag()? {
            (POINT_TIME, FIXED64) => time = r.fixed64()?,
            (POINT_START_TIME, FIXED64) => start = r.fixed64()?,
            (POINT_AS_DOUBLE, FIXED64) => value = Some(f64::from_bits(r.fixed64()?)),
            (POINT_AS_INT, FIXED64) => value = Some(r.fixed64()? as i64 as f64),
            (POINT_FLAGS, VARINT) => flags = r.varint()? as u32, // uint32: the low 32 bits, as protobuf parsers read it
            (POINT_EXEMPLARS, LEN) => well_formed(r.nested()?)?,
            (POINT_ATTRIBUTES, LEN) => {
                let (at, body) = r.delimited()?;
                out.kv_offset.push(at as u32);
                out.kv_len.push(body.len() as u32);
                hash.write_u64(body.len() as u64);
                hash.write(body);
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    out.time.push(time);
    out.start.push(start);
    out.flags.push(flags);
    out.value.push(value.unwrap_or(f64::NAN));
    out.has_value.push(value.is_some() as u8);
    let both = hash.finish128();
    out.hash.extend([both.h1, both.h2]);
    out.kv_first.push(first_kv as u32);
    out.kv_count.push((out.kv_offset.len() - first_kv) as u32);
    Ok(())
}

/// An exemplar is not read, but the request is refused when one is not a well-formed message, as
/// the full parse refuses it (its fields are scalars and bytes in the lenient classes: nothing deeper).
fn well_formed(mut r: Reader) -> Result<(), Malformed> {
    while r.more() {
        let (_, wire) = r.tag()?;
        r.skip(wire)?;
    }
    Ok(())
}

fn raw<T: Copy>(values: &[T]) -> &[u8] {
    // Plain numbers, read back in Python with numpy's native-endian dtypes.
    unsafe { std::slice::from_raw_parts(values.as_ptr() as *const u8, std::mem::size_of_val(values)) }
}

/// `(counts, time, start, flags, value, has_value, hash, kv_first, kv_count, kv_offset, kv_len)`
/// as bytes of u32, u64, u64, u32, f64, u8, u64 pairs, u32, u32, u32, u32. ValueError when the
/// bytes cannot be read.
#[pyfunction(name = "number_points")]
fn py_number_points<'py>(py: Python<'py>, request: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
    let keys = process_keys();
    let p = py.allow_threads(|| number_points(request, keys)).map_err(|e| PyValueError::new_err(e.0))?;
    let columns = [
        raw(&p.counts), raw(&p.time), raw(&p.start), raw(&p.flags), raw(&p.value), raw(&p.has_value),
        raw(&p.hash), raw(&p.kv_first), raw(&p.kv_count), raw(&p.kv_offset), raw(&p.kv_len),
    ];
    PyTuple::new(py, columns.iter().map(|c| PyBytes::new(py, c)))
}

/// A set's 128-bit key, read from 16 bytes as the walker wrote them (two native-endian u64s).
fn set_key(bytes: &[u8]) -> u128 {
    let (a, b) = bytes.split_at(8);
    let a = u64::from_ne_bytes(a.try_into().expect("8 bytes"));
    let b = u64::from_ne_bytes(b.try_into().expect("8 bytes"));
    (a as u128) << 64 | b as u128
}

/// Keys are keyed SipHash outputs already: hashing them again is wasted work.
#[derive(Default)]
struct KeyBits(u64);

impl Hasher for KeyBits {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64; // not used by u128 keys; correct for any others
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// Attribute-set ids by the walker's 128-bit key (`AttributeSets.hashed`). Looking up a request's
/// points here costs about 10 ns each, where a Python dict keyed by 16-byte strings cost 280 ns
/// (the bytes objects made to ask with, then the lookup).
#[pyclass(name = "SetIndex", module = "telemetry_gateway_native")]
#[derive(Default)]
struct SetIndex {
    ids: HashMap<u128, i64, BuildHasherDefault<KeyBits>>,
}

fn sixteen(key: &[u8]) -> PyResult<()> {
    if key.len() == 16 {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!("a set key is 16 bytes, not {}", key.len())))
    }
}

#[pymethods]
impl SetIndex {
    #[new]
    fn new() -> Self {
        SetIndex::default()
    }

    fn __len__(&self) -> usize {
        self.ids.len()
    }

    fn __setitem__(&mut self, key: &[u8], id: i64) -> PyResult<()> {
        sixteen(key)?;
        self.ids.insert(set_key(key), id);
        Ok(())
    }

    fn get(&self, key: &[u8]) -> PyResult<Option<i64>> {
        sixteen(key)?;
        Ok(self.ids.get(&set_key(key)).copied())
    }

    fn clear(&mut self) {
        self.ids.clear();
    }

    /// The id of each 16-byte key in `keys`, as bytes of native i64, -1 where a key is unknown;
    /// and how many were unknown.
    fn lookup<'py>(&self, py: Python<'py>, keys: &[u8]) -> PyResult<(Bound<'py, PyBytes>, usize)> {
        if keys.len() % 16 != 0 {
            return Err(PyValueError::new_err("keys are 16 bytes each"));
        }
        let mut unknown = 0;
        let ids: Vec<i64> = keys
            .chunks_exact(16)
            .map(|k| {
                let id = self.ids.get(&set_key(k)).copied();
                unknown += id.is_none() as usize;
                id.unwrap_or(-1)
            })
            .collect();
        Ok((PyBytes::new(py, raw(&ids)), unknown))
    }
}

/// `(samples, histograms, hash, label_first, label_count, label_offset, label_len, value, timestamp)`
/// of a decompressed remote-write `WriteRequest`: per series u32, u32, u64 pairs, u32, u32; per label
/// u32, u32; per sample f64, i64. ValueError when the bytes cannot be read.
#[pyfunction(name = "write_request")]
fn py_write_request<'py>(py: Python<'py>, request: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
    let keys = process_keys();
    let s = py.allow_threads(|| remote_write::write_request(request, keys)).map_err(|e| PyValueError::new_err(e.0))?;
    let columns = [
        raw(&s.samples), raw(&s.histograms), raw(&s.hash), raw(&s.label_first), raw(&s.label_count),
        raw(&s.label_offset), raw(&s.label_len), raw(&s.value), raw(&s.timestamp),
    ];
    PyTuple::new(py, columns.iter().map(|c| PyBytes::new(py, c)))
}

/// Rows `ids` of a `map<string, string>` column given by its buffers (offsets, key offsets, key bytes,
/// value offsets, value bytes: offset 0, no nulls), as the same five buffers, as bytes, of a new column.
/// ValueError when a row is out of range or the offsets do not describe the data.
#[pyfunction(name = "gather_maps")]
fn py_gather_maps<'py>(
    py: Python<'py>, offsets: PyBuffer<i32>, key_offsets: PyBuffer<i32>, key_data: PyBuffer<u8>,
    value_offsets: PyBuffer<i32>, value_data: PyBuffer<u8>, ids: PyBuffer<i64>,
) -> PyResult<Bound<'py, PyTuple>> {
    let column = maps::Maps {
        offsets: view(&offsets)?,
        key_offsets: view(&key_offsets)?,
        key_data: view(&key_data)?,
        value_offsets: view(&value_offsets)?,
        value_data: view(&value_data)?,
    };
    let ids = view(&ids)?;
    let g = py.allow_threads(|| maps::gather(&column, ids)).map_err(|e| PyValueError::new_err(e.0))?;
    let columns = [raw(&g.offsets), raw(&g.key_offsets), &g.key_data, raw(&g.value_offsets), &g.value_data];
    PyTuple::new(py, columns.iter().map(|c| PyBytes::new(py, c)))
}

/// The items of a C-contiguous buffer; the `PyBuffer` keeps them alive and unchanged while held.
fn view<T: Element>(buffer: &PyBuffer<T>) -> PyResult<&[T]> {
    if !buffer.is_c_contiguous() {
        return Err(PyValueError::new_err("buffer is not contiguous"));
    }
    if buffer.item_count() == 0 {
        return Ok(&[]);
    }
    Ok(unsafe { std::slice::from_raw_parts(buffer.buf_ptr() as *const T, buffer.item_count()) })
}

#[pymodule]
fn telemetry_gateway_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py_number_points, m)?)?;
    m.add_function(wrap_pyfunction!(py_write_request, m)?)?;
    m.add_function(wrap_pyfunction!(py_gather_maps, m)?)?;
    m.add_class::<SetIndex>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let keys = process_keys();
        for bytes in [&[0x0a, 0x05, 0x12][..], &[0x0a][..], &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..]] {
            assert!(number_points(bytes, keys).is_err());
        }
        assert_eq!(number_points(&[], keys), Ok(Points::default()));
    }
}
