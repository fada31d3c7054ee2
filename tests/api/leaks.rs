//! `POST /api/v1/leaks` (SPEC §13).
