"""Access policies: the model of a policy file (`policies.model`) and its loading (`policies.load`)."""
