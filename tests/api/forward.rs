//! `/auth/forward` spoken to directly (SPEC §13); through a real nginx in
//! `edge_nginx`.
