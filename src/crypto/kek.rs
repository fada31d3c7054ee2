//! The key-encryption key. PLACEHOLDER: replaced by the keystore branch.

use zeroize::Zeroizing;

/// Why a key-encryption key cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// Placeholder.
    #[error("{0}")]
    Invalid(String),
}

/// The key-encryption key.
pub struct Kek(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<hidden>)")
    }
}

impl Kek {
    /// Placeholder.
    pub fn parse(_text: &str) -> Result<Self, KekError> {
        Ok(Self(Zeroizing::new([0; 32])))
    }
    /// Placeholder.
    pub fn from_file(_path: &std::path::Path) -> Result<Self, KekError> {
        Ok(Self(Zeroizing::new([0; 32])))
    }
    /// Placeholder.
    pub fn generate() -> Result<String, KekError> {
        Ok(String::new())
    }
    /// Placeholder.
    pub fn seal(&self, _aad: &[u8], p: &[u8]) -> Result<([u8; 12], Vec<u8>), KekError> {
        Ok(([0; 12], p.to_vec()))
    }
    /// Placeholder.
    pub fn open(
        &self,
        _aad: &[u8],
        _nonce: &[u8],
        c: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KekError> {
        Ok(Zeroizing::new(c.to_vec()))
    }
}
