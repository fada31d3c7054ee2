//! Leaked keys and tokens reported by secret scanners (SPEC §13).
