//! Stored logins of `tessera login` (docs/api.md, "The device grant"): one entry per gateway URL
//! in `$XDG_CONFIG_HOME/tessera/credentials.json` (else
//! `~/.config/tessera/credentials.json`).
//!
//! The file is created with mode 0600 in a directory created 0700, and
//! replaced atomically (a temporary file beside it, then a rename), so a
//! crash never leaves half a file and the tokens are never readable by
//! others, not even for a moment. An existing directory's mode is left as
//! the person set it, but one that other users may write to is refused,
//! and a file others may read is made private before it is used.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The built-in command-line client.
pub const CLIENT_ID: &str = "tessera-cli";
/// An access token this close to its expiry is refreshed before use.
const REFRESH_MARGIN_SECS: i64 = 30;

/// One gateway's login.
#[derive(Clone)]
pub struct Credentials {
    /// The access token (a JWT).
    pub access_token: SecretString,
    /// The refresh token, when one was issued (`offline_access`).
    pub refresh_token: Option<SecretString>,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_token", &"<hidden>")
            .field("refresh_token", &"<hidden>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Credentials {
    /// From an RFC 6749 §5.1 token response received just now.
    pub fn from_response(body: &Value) -> Result<Self, String> {
        let access = body["access_token"]
            .as_str()
            .ok_or("the gateway answered without an access_token")?;
        let expires_in = body["expires_in"].as_i64().unwrap_or(0).clamp(0, 86_400);
        Ok(Self {
            access_token: SecretString::from(access.to_owned()),
            refresh_token: body["refresh_token"]
                .as_str()
                .map(|r| SecretString::from(r.to_owned())),
            expires_at: Utc::now() + Duration::seconds(expires_in),
        })
    }

    /// Whether the access token must be refreshed before use.
    pub fn expiring(&self) -> bool {
        self.expires_at - Utc::now() < Duration::seconds(REFRESH_MARGIN_SECS)
    }
}

/// The file as stored.
#[derive(Default, Serialize, Deserialize)]
struct CredentialFile {
    #[serde(default)]
    gateways: BTreeMap<String, Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    expires_at: DateTime<Utc>,
}

/// Where the credentials live.
pub fn path() -> Result<PathBuf, String> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        // The XDG rule: a relative value is invalid and ignored.
        Some(x) if Path::new(&x).is_absolute() => PathBuf::from(x),
        _ => match std::env::var_os("HOME") {
            Some(h) if !h.is_empty() => PathBuf::from(h).join(".config"),
            _ => {
                return Err(
                    "cannot find the configuration directory: set HOME or XDG_CONFIG_HOME".into(),
                );
            }
        },
    };
    Ok(base.join("tessera").join("credentials.json"))
}

/// The key of a gateway URL: scheme, host and port as the URL standard
/// writes them (lower case, default port dropped), and the path without a
/// trailing slash; no query, fragment or user info.
pub fn normalise_url(url: &str) -> Result<String, String> {
    let u = url::Url::parse(url.trim()).map_err(|e| format!("{url}: not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("{url}: expected an http:// or https:// URL"));
    }
    Ok(format!(
        "{}{}",
        u.origin().ascii_serialization(),
        u.path().trim_end_matches('/')
    ))
}

/// Refuses a credentials directory other users may write to: they could
/// swap the file for one of theirs (a login as someone else) or a link.
fn check_dir(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(dir) {
            Ok(m) if m.permissions().mode() & 0o022 != 0 => {
                return Err(format!(
                    "{}: other users may write to this directory, so the stored logins cannot be trusted; run `chmod 700 {}`",
                    dir.display(),
                    dir.display()
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A credentials file others may read (made before this version, or by
/// hand) is taken back to 0600 at once, with a warning: the tokens in it
/// may have been seen.
fn tighten(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Never through a link: that would change a file elsewhere.
        if let Ok(m) = std::fs::symlink_metadata(path)
            && m.is_file()
            && m.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!(
                "warning: {} was readable by other users; it is now private (0600). Consider `tessera logout` and a new login.",
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn read_file(path: &Path) -> Result<CredentialFile, String> {
    if let Some(dir) = path.parent() {
        check_dir(dir)?;
    }
    tighten(path)?;
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: unreadable: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CredentialFile::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn write_file(path: &Path, file: &CredentialFile) -> Result<(), String> {
    let dir = path
        .parent()
        .ok_or("the credentials path has no directory")?;
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    check_dir(dir)?;
    let bytes = zeroize::Zeroizing::new(
        serde_json::to_vec_pretty(file).map_err(|e| format!("credentials: {e}"))?,
    );
    let suffix = crate::crypto::random::base62(12).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(".credentials.json.{suffix}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(())
}

/// The stored login for `url`, if any.
pub fn load(url: &str) -> Result<Option<Credentials>, String> {
    let key = normalise_url(url)?;
    let file = read_file(&path()?)?;
    Ok(file.gateways.get(&key).map(|e| Credentials {
        access_token: SecretString::from(e.access_token.clone()),
        refresh_token: e.refresh_token.clone().map(SecretString::from),
        expires_at: e.expires_at,
    }))
}

/// Stores the login for `url`, replacing any earlier one.
pub fn save(url: &str, c: &Credentials) -> Result<(), String> {
    let key = normalise_url(url)?;
    let p = path()?;
    let mut file = read_file(&p)?;
    file.gateways.insert(
        key,
        Entry {
            access_token: c.access_token.expose_secret().to_owned(),
            refresh_token: c
                .refresh_token
                .as_ref()
                .map(|r| r.expose_secret().to_owned()),
            expires_at: c.expires_at,
        },
    );
    write_file(&p, &file)
}

/// Forgets the login for `url`; false when there was none.
pub fn forget(url: &str) -> Result<bool, String> {
    let key = normalise_url(url)?;
    let p = path()?;
    let mut file = read_file(&p)?;
    if file.gateways.remove(&key).is_none() {
        return Ok(false);
    }
    write_file(&p, &file)?;
    Ok(true)
}

/// Text from the gateway made safe for a terminal: control characters
/// (escape sequences could retitle, clear or rewrite the terminal) and
/// bidirectional overrides (which could reorder what is shown) dropped.
/// Names and messages can come from people or upstream providers.
pub fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

/// One line for an `/oauth/*` error answer, in the shape of every other
/// server error: `<status>: <message> (<code>)`.
pub fn oauth_error(status: reqwest::StatusCode, body: &Value) -> String {
    format!(
        "{status}: {} ({})",
        printable(body["error_description"].as_str().unwrap_or_default()),
        printable(body["error"].as_str().unwrap_or("error"))
    )
}

/// Exchanges the refresh token for new tokens and stores them (the
/// rotated refresh token replaces the old one).
pub async fn refresh(
    http: &reqwest::Client,
    url: &str,
    c: &Credentials,
) -> Result<Credentials, String> {
    let Some(rt) = c.refresh_token.as_ref() else {
        return Err(format!(
            "the login for {url} has expired: run `tessera login --url {url}`"
        ));
    };
    let endpoint = format!("{}/oauth/token", url.trim_end_matches('/'));
    let res = http
        .post(&endpoint)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", rt.expose_secret()),
        ])
        .send()
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let (status, body) = super::client::read_json(&endpoint, res).await?;
    if status == reqwest::StatusCode::BAD_REQUEST && body["error"] == "invalid_grant" {
        return Err(format!(
            "the login for {url} has ended: run `tessera login --url {url}`"
        ));
    }
    if !status.is_success() {
        return Err(oauth_error(status, &body));
    }
    let mut next = Credentials::from_response(&body)?;
    if next.refresh_token.is_none() {
        next.refresh_token = c.refresh_token.clone();
    }
    save(url, &next)?;
    Ok(next)
}

/// A usable access token from the stored login for `url`, refreshed first
/// when it is expired or about to be.
pub async fn access_token(http: &reqwest::Client, url: &str) -> Result<SecretString, String> {
    let Some(c) = load(url)? else {
        return Err(format!(
            "not signed in to {url}: run `tessera login --url {url}`, or set TESSERA_APP_ID and TESSERA_APP_SECRET"
        ));
    };
    if !c.expiring() {
        return Ok(c.access_token);
    }
    Ok(refresh(http, url, &c).await?.access_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised() {
        for (given, want) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("HTTPS://Auth.Example.com:443/", "https://auth.example.com"),
            (
                "https://auth.example.com/tessera/?x=1#y",
                "https://auth.example.com/tessera",
            ),
        ] {
            assert_eq!(normalise_url(given).unwrap(), want, "{given}");
        }
        assert!(normalise_url("ftp://x").is_err());
        assert!(normalise_url("not a url").is_err());
    }

    #[test]
    fn debug_hides_the_tokens() {
        let c = Credentials {
            access_token: SecretString::from("eyJ.secret.access"),
            refresh_token: Some(SecretString::from("tsr_rt_secret")),
            expires_at: Utc::now(),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<hidden>"));
    }

    #[test]
    fn gateway_text_cannot_drive_the_terminal() {
        let body = serde_json::json!({
            "error": "invalid_grant\u{1b}[2J",
            "error_description": "\u{1b}]0;owned\u{7}gone\r\u{9b}31m \u{202e}txt.exe"
        });
        let line = oauth_error(reqwest::StatusCode::BAD_REQUEST, &body);
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{line:?}"
        );
        assert!(
            line.contains("invalid_grant") && line.contains("gone"),
            "{line}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_file_is_made_private_and_a_shared_directory_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("tessera");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let p = d.join("credentials.json");
        std::fs::write(&p, r#"{"gateways":{}}"#).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        read_file(&p).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600, "taken back on first read");
        // A directory others may write to: neither read nor written.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = read_file(&p).err().unwrap();
        assert!(e.contains("chmod 700"), "{e}");
        let e = write_file(&p, &CredentialFile::default()).err().unwrap();
        assert!(e.contains("chmod 700"), "{e}");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(read_file(&p).is_err(), "group-writable too");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        read_file(&p).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_link_at_the_path_is_replaced_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("tessera");
        std::fs::create_dir(&d).unwrap();
        let elsewhere = dir.path().join("victim.txt");
        std::fs::write(&elsewhere, "untouched").unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = d.join("credentials.json");
        std::os::unix::fs::symlink(&elsewhere, &p).unwrap();
        let mut file = CredentialFile::default();
        file.gateways.insert(
            "http://a".into(),
            Entry {
                access_token: "at".into(),
                refresh_token: None,
                expires_at: Utc::now(),
            },
        );
        // Reading through the link fails (not JSON); writing replaces it.
        assert!(read_file(&p).is_err());
        write_file(&p, &file).unwrap();
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched");
        let before = std::fs::metadata(&elsewhere).unwrap().permissions().mode();
        assert_eq!(before & 0o077, 0o044, "the link's target was not chmodded");
        assert!(!std::fs::symlink_metadata(&p).unwrap().is_symlink());
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_written_atomically_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tessera").join("credentials.json");
        let mut file = CredentialFile::default();
        file.gateways.insert(
            "http://a".into(),
            Entry {
                access_token: "at".into(),
                refresh_token: Some("rt".into()),
                expires_at: Utc::now(),
            },
        );
        write_file(&p, &file).unwrap();
        write_file(&p, &file).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(p.parent().unwrap()), 0o700);
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["credentials.json"], "no temporary file left");
        assert_eq!(
            read_file(&p).unwrap().gateways["http://a"].access_token,
            "at"
        );
    }
}
