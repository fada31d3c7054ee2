//! First start: make sure an administrator application exists.

use chrono::Utc;
use secrecy::SecretString;
use std::sync::Arc;

use super::Gateway;
use crate::crypto::secret;
use crate::domain::application::GATEWAY_OWNER;
use crate::domain::{Application, DomainError, Environment, KeyType, Permission};
use crate::store::StoredApp;

/// What bootstrap did.
pub enum Bootstrap {
    /// Applications exist and no admin was configured: nothing to do.
    Existing,
    /// A new admin was generated; its secret must be shown once.
    Created {
        /// The new admin's id.
        app_id: String,
        /// Its secret.
        secret: SecretString,
    },
    /// The configured admin (`TESSERA_ADMIN_APP_ID`) exists with that secret.
    Ensured {
        /// Its id.
        app_id: String,
    },
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bootstrap::Existing => f.write_str("Existing"),
            Bootstrap::Created { app_id, .. } => write!(f, "Created({app_id}, <hidden>)"),
            Bootstrap::Ensured { app_id } => write!(f, "Ensured({app_id})"),
        }
    }
}

/// The name a bootstrap admin gets.
const ADMIN_NAME: &str = "bootstrap admin";

fn admin_record(
    id: String,
    name: String,
    prefix: String,
    secret_hash: String,
    secret_hint: Option<String>,
) -> Result<StoredApp, DomainError> {
    let now = Utc::now();
    Ok(StoredApp {
        app: Application {
            id,
            name,
            description: "Created by the gateway on first start".into(),
            owner: GATEWAY_OWNER.into(),
            key_type: KeyType::Secret,
            environment: Environment::Live,
            prefix,
            roles: Vec::new(),
            permissions: vec![Permission::parse("*")?],
            access_rules: Vec::new(),
            audiences: Vec::new(),
            allowed_ips: Vec::new(),
            expires_at: None,
            token_ttl: None,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: Vec::new(),
            rate_limit: None,
            revoked_at: None,
            leaked_at: None,
            created_at: now,
            updated_at: now,
            last_used_at: None,
            last_used_ip: None,
            use_count: 0,
        },
        secret_hash,
        secret_hint,
        previous_secret: None,
    })
}

/// Ensures the configured admin, or creates one when the store is empty:
/// once per store, however many gateways start on it at the same instant.
pub async fn run(gw: &Gateway) -> Result<Bootstrap, DomainError> {
    ensure_admin_user(gw).await?;
    if let (Some(id), Some(secret)) = (&gw.policy.admin_app_id, &gw.policy.admin_app_secret) {
        return ensure(gw, id, secret).await;
    }
    if gw.apps.count().await? > 0 {
        return Ok(Bootstrap::Existing);
    }
    let id = secret::new_app_id().map_err(|e| DomainError::Internal(e.to_string()))?;
    let generated = secret::generate(
        &gw.policy.key_prefix,
        KeyType::Secret,
        Environment::Live,
        &id,
    )
    .map_err(|e| DomainError::Internal(e.to_string()))?;
    let hash = gw.hasher.hash(&generated.secret).await?;
    // The count above only spares the hashing on a store in use. The claim
    // is this insert: it writes only into a store holding no application,
    // atomically, so of gateways starting at once on one empty store
    // exactly one creates (and prints) an admin.
    let claimed = gw
        .apps
        .insert_first(&admin_record(
            id.clone(),
            ADMIN_NAME.into(),
            generated.prefix,
            hash,
            Some(generated.hint),
        )?)
        .await?;
    if !claimed {
        tracing::info!("another gateway created the bootstrap admin application");
        return Ok(Bootstrap::Existing);
    }
    tracing::info!(app_id = %id, "bootstrap admin application created");
    audit_bootstrap(gw, &id, "bootstrap.admin_created").await;
    Ok(Bootstrap::Created {
        app_id: id,
        secret: generated.secret,
    })
}

/// Bootstrap acts as the gateway itself: recorded with actor `gateway`.
async fn audit_bootstrap(gw: &Gateway, id: &str, action: &str) {
    let actor = super::auth::Principal {
        subject: GATEWAY_OWNER.into(),
        permissions: Vec::new(),
        owner: GATEWAY_OWNER.into(),
        ip: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        session: None,
    };
    super::audit::record(
        gw,
        &actor,
        action,
        id,
        serde_json::json!({"permissions": ["*"]}),
    )
    .await;
}

async fn ensure(gw: &Gateway, id: &str, secret: &SecretString) -> Result<Bootstrap, DomainError> {
    match gw.apps.get(id).await? {
        None => {
            let hash = gw.hasher.hash(secret).await?;
            // An operator-chosen secret has no public head to show.
            let prefix = "(configured)".to_owned();
            // Names are unique: should an application hold the usual name
            // (a generated admin, say), the configured one is told apart by
            // its id.
            let record =
                admin_record(id.to_owned(), ADMIN_NAME.into(), prefix, hash.clone(), None)?;
            let inserted = match gw.apps.insert(&record).await {
                Err(crate::store::StoreError::Conflict {
                    what: crate::store::Entity::ApplicationName,
                    ..
                }) => {
                    let mut record = record;
                    record.app.name = format!("{ADMIN_NAME} {id}");
                    gw.apps.insert(&record).await
                }
                other => other,
            };
            match inserted {
                Ok(()) => {
                    let _ = gw.operator_admin_hash.set(hash);
                    tracing::info!(app_id = %id, "configured admin application created");
                    audit_bootstrap(gw, id, "bootstrap.admin_created").await;
                }
                // Another gateway on the same store created it a moment ago:
                // check it the way an existing one is checked.
                Err(crate::store::StoreError::Conflict {
                    what: crate::store::Entity::Application,
                    ..
                }) => {
                    return Box::pin(ensure(gw, id, secret)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Some(mut stored) => {
            let current = Arc::from(stored.secret_hash.as_str());
            if !gw.hasher.verify(secret, Some(current)).await? {
                stored.secret_hash = gw.hasher.hash(secret).await?;
                let read_at = std::mem::replace(&mut stored.app.updated_at, Utc::now());
                gw.apps.update(&stored, read_at).await?;
                // The old secret's tokens end with it, as on a rotation.
                super::revocation::revoke_subject(gw, id).await?;
                gw.app_cache.invalidate(id);
                gw.secret_cache.invalidate_app(id);
                gw.grants_cache.invalidate(id);
                tracing::info!(app_id = %id, "configured admin secret replaced; its earlier tokens are revoked");
                audit_bootstrap(gw, id, "bootstrap.admin_secret_replaced").await;
            }
            let _ = gw.operator_admin_hash.set(stored.secret_hash.clone());
            if stored.app.revoked_at.is_some() {
                // Revocation is an operator's decision; a restart must not undo it.
                tracing::warn!(app_id = %id, "configured admin application is revoked");
            }
        }
    }
    Ok(Bootstrap::Ensured {
        app_id: id.to_owned(),
    })
}

/// `TESSERA_ADMIN_EMAIL` + `TESSERA_ADMIN_PASSWORD`: the user exists, is
/// active, and signs in with that password. Created with permission `*`;
/// an existing user keeps the grants operators gave it (only its password
/// is made to match; a replaced password ends its sessions).
async fn ensure_admin_user(gw: &Gateway) -> Result<(), DomainError> {
    let (Some(email), Some(password)) = (&gw.policy.admin_email, &gw.policy.admin_password) else {
        return Ok(());
    };
    let email = crate::domain::user::normalize_email(email)?;
    match gw.users.find_user_by_email(&email).await? {
        None => {
            let now = Utc::now();
            let id = format!(
                "usr_{}",
                crate::crypto::random::base62(16)
                    .map_err(|e| DomainError::Internal(e.to_string()))?
            );
            let user = crate::domain::User {
                id: id.clone(),
                email,
                name: "Administrator".into(),
                roles: Vec::new(),
                permissions: vec![Permission::parse("*")?],
                status: crate::domain::UserStatus::Active,
                identities: Vec::new(),
                has_password: true,
                created_at: now,
                updated_at: now,
                last_login_at: None,
            };
            let hash = gw.hasher.hash(password).await?;
            match gw
                .users
                .insert_user(&crate::store::StoredUser {
                    user,
                    password_hash: Some(hash),
                })
                .await
            {
                Ok(()) => {
                    tracing::info!(user_id = %id, "configured admin user created");
                    audit_bootstrap(gw, &id, "bootstrap.admin_user_created").await;
                }
                // Another gateway created it a moment ago.
                Err(crate::store::StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(stored) => {
            let current = stored.password_hash.as_deref().map(Arc::from);
            if !gw.hasher.verify(password, current).await? {
                super::people::me::set_password(gw, &stored.user.id, password).await?;
                super::people::sessions::end_all(gw, &stored.user.id).await?;
                tracing::info!(user_id = %stored.user.id, "configured admin user's password replaced; its sessions ended");
                audit_bootstrap(gw, &stored.user.id, "bootstrap.admin_password_replaced").await;
            }
        }
    }
    Ok(())
}
