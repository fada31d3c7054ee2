//! Per-application rate limits at the edge (SPEC §13).
