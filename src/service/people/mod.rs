//! People: sessions, sign-in, and Tessera as the OAuth 2.0 / OpenID Connect
//! provider for its own users (docs/api.md, "People").

pub mod clients;
pub mod console;
pub mod device;
pub mod me;
pub mod oauth;
pub mod reveal;
pub mod sessions;
pub mod signin;
pub mod tokens;
