//! The edge through a real Debian nginx in front of `cluster_api` (SPEC §13).
