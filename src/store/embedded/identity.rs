//! Roles and users in the embedded store.

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable};

use super::{APPS, EmbeddedStore, ROLES, USERS, USERS_BY_EMAIL, USERS_BY_IDENTITY, backend};
use crate::domain::Role;
use crate::store::common::{
    RoleHolders, app_holds_role, decode, encode, identity_keys, page, user_holds_role,
};
use crate::store::{Entity, RoleDelete, RoleStore, StoreError, StoredApp, StoredUser, UserStore};

impl EmbeddedStore {
    /// Writes a role that must already exist (`update`: else `NotFound`) or
    /// must not (else `Conflict`).
    /// Inserts (`read_at` `None`) or updates a role.
    async fn put_role(
        &self,
        role: &Role,
        read_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), StoreError> {
        let role = role.clone();
        let update = read_at.is_some();
        self.blocking(move |db| {
            let bytes = encode(&role)?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut t = txn.open_table(ROLES).map_err(backend)?;
                let current = match t.get(role.name.as_str()).map_err(backend)? {
                    Some(v) => Some(decode::<Role>(v.value())?),
                    None => None,
                };
                if let (Some(cur), Some(read_at)) = (&current, read_at)
                    && cur.updated_at != read_at
                {
                    return Err(StoreError::Stale {
                        what: Entity::Role,
                        id: role.name,
                    });
                }
                match (current.is_some(), update) {
                    (true, true) | (false, false) => {}
                    (true, false) => {
                        return Err(StoreError::Conflict {
                            what: Entity::Role,
                            id: role.name,
                        });
                    }
                    (false, true) => {
                        return Err(StoreError::NotFound {
                            what: Entity::Role,
                            id: role.name,
                        });
                    }
                }
                t.insert(role.name.as_str(), bytes.as_bytes())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }
}

#[async_trait]
impl RoleStore for EmbeddedStore {
    async fn insert_role(&self, role: &Role) -> Result<(), StoreError> {
        self.put_role(role, None).await
    }

    async fn get_role(&self, name: &str) -> Result<Option<Role>, StoreError> {
        self.read_one(ROLES, name).await
    }

    async fn list_roles(&self) -> Result<Vec<Role>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(ROLES).map_err(backend)?;
            let mut out = Vec::new();
            for entry in t.iter().map_err(backend)? {
                let (_, v) = entry.map_err(backend)?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn update_role(
        &self,
        role: &Role,
        read_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.put_role(role, Some(read_at)).await
    }

    async fn delete_role(&self, name: &str, detach: bool) -> Result<RoleDelete, StoreError> {
        let name = name.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut roles = txn.open_table(ROLES).map_err(backend)?;
                if roles.get(name.as_str()).map_err(backend)?.is_none() {
                    return Ok(RoleDelete::NotFound);
                }
                let mut apps = txn.open_table(APPS).map_err(backend)?;
                let mut users = txn.open_table(USERS).map_err(backend)?;
                let mut held = RoleHolders::default();
                for entry in apps.iter().map_err(backend)? {
                    let (_, v) = entry.map_err(backend)?;
                    let a: StoredApp = decode(v.value())?;
                    if app_holds_role(&a, &name) {
                        held.apps.push(a);
                    }
                }
                for entry in users.iter().map_err(backend)? {
                    let (_, v) = entry.map_err(backend)?;
                    let u: StoredUser = decode(v.value())?;
                    if user_holds_role(&u, &name) {
                        held.users.push(u);
                    }
                }
                let detached = match held.settle(&name, detach) {
                    Ok(d) => d,
                    // Dropping the transaction unwritten changes nothing.
                    Err(in_use) => return Ok(in_use),
                };
                for a in &detached.apps {
                    apps.insert(a.app.id.as_str(), encode(a)?.as_bytes())
                        .map_err(backend)?;
                }
                for u in &detached.users {
                    users
                        .insert(u.user.id.as_str(), encode(u)?.as_bytes())
                        .map_err(backend)?;
                }
                roles.remove(name.as_str()).map_err(backend)?;
            }
            txn.commit().map_err(backend)?;
            Ok(RoleDelete::Deleted)
        })
        .await
    }
}

#[async_trait]
impl UserStore for EmbeddedStore {
    async fn insert_user(&self, user: &StoredUser) -> Result<(), StoreError> {
        let user = user.clone();
        self.blocking(move |db| {
            let bytes = encode(&user)?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut users = txn.open_table(USERS).map_err(backend)?;
                let mut emails = txn.open_table(USERS_BY_EMAIL).map_err(backend)?;
                let (id, email) = (user.user.id.as_str(), user.user.email.as_str());
                if users.get(id).map_err(backend)?.is_some() {
                    return Err(StoreError::Conflict {
                        what: Entity::User,
                        id: id.to_owned(),
                    });
                }
                if emails.get(email).map_err(backend)?.is_some() {
                    return Err(StoreError::Conflict {
                        what: Entity::UserEmail,
                        id: email.to_owned(),
                    });
                }
                let mut linked = txn.open_table(USERS_BY_IDENTITY).map_err(backend)?;
                let keys = identity_keys(&user);
                for k in &keys {
                    if linked.get(k.as_str()).map_err(backend)?.is_some() {
                        return Err(StoreError::Conflict {
                            what: Entity::UserIdentity,
                            id: k.clone(),
                        });
                    }
                }
                users.insert(id, bytes.as_bytes()).map_err(backend)?;
                emails.insert(email, id).map_err(backend)?;
                for k in &keys {
                    linked.insert(k.as_str(), id).map_err(backend)?;
                }
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn get_user(&self, id: &str) -> Result<Option<StoredUser>, StoreError> {
        self.read_one(USERS, id).await
    }

    async fn list_users(
        &self,
        limit: usize,
        after: Option<String>,
    ) -> Result<(Vec<StoredUser>, Option<String>), StoreError> {
        self.blocking(move |db| {
            let limit = limit.max(1);
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(USERS).map_err(backend)?;
            let range = match &after {
                Some(a) => t.range::<&str>((
                    std::ops::Bound::Excluded(a.as_str()),
                    std::ops::Bound::Unbounded,
                )),
                None => t.range::<&str>(..),
            }
            .map_err(backend)?;
            // One past the limit: tells whether more remain.
            let mut out: Vec<StoredUser> = Vec::new();
            for entry in range.take(limit.saturating_add(1)) {
                let (_, v) = entry.map_err(backend)?;
                out.push(decode(v.value())?);
            }
            Ok(page(out, limit, |u| u.user.id.clone()))
        })
        .await
    }

    async fn update_user(
        &self,
        user: &StoredUser,
        read_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let user = user.clone();
        self.blocking(move |db| {
            let bytes = encode(&user)?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut users = txn.open_table(USERS).map_err(backend)?;
                let mut emails = txn.open_table(USERS_BY_EMAIL).map_err(backend)?;
                let id = user.user.id.as_str();
                let old: StoredUser = match users.get(id).map_err(backend)? {
                    Some(v) => decode(v.value())?,
                    None => {
                        return Err(StoreError::NotFound {
                            what: Entity::User,
                            id: id.to_owned(),
                        });
                    }
                };
                if old.user.updated_at != read_at {
                    return Err(StoreError::Stale {
                        what: Entity::User,
                        id: id.to_owned(),
                    });
                }
                if old.user.email != user.user.email {
                    if emails
                        .get(user.user.email.as_str())
                        .map_err(backend)?
                        .is_some()
                    {
                        return Err(StoreError::Conflict {
                            what: Entity::UserEmail,
                            id: user.user.email.clone(),
                        });
                    }
                    emails.remove(old.user.email.as_str()).map_err(backend)?;
                    emails
                        .insert(user.user.email.as_str(), id)
                        .map_err(backend)?;
                }
                let (before, after) = (identity_keys(&old), identity_keys(&user));
                let mut linked = txn.open_table(USERS_BY_IDENTITY).map_err(backend)?;
                for k in after.iter().filter(|k| !before.contains(k)) {
                    let owner = linked
                        .get(k.as_str())
                        .map_err(backend)?
                        .map(|v| v.value().to_owned());
                    if owner.is_some_and(|o| o != id) {
                        return Err(StoreError::Conflict {
                            what: Entity::UserIdentity,
                            id: k.clone(),
                        });
                    }
                }
                for k in before.iter().filter(|k| !after.contains(k)) {
                    linked.remove(k.as_str()).map_err(backend)?;
                }
                for k in after.iter().filter(|k| !before.contains(k)) {
                    linked.insert(k.as_str(), id).map_err(backend)?;
                }
                users.insert(id, bytes.as_bytes()).map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let existed = {
                let mut users = txn.open_table(USERS).map_err(backend)?;
                let old: Option<StoredUser> = match users.remove(id.as_str()).map_err(backend)? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                if let Some(old) = &old {
                    let mut emails = txn.open_table(USERS_BY_EMAIL).map_err(backend)?;
                    emails.remove(old.user.email.as_str()).map_err(backend)?;
                    let mut linked = txn.open_table(USERS_BY_IDENTITY).map_err(backend)?;
                    for k in identity_keys(old) {
                        linked.remove(k.as_str()).map_err(backend)?;
                    }
                }
                old.is_some()
            };
            txn.commit().map_err(backend)?;
            Ok(existed)
        })
        .await
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<StoredUser>, StoreError> {
        let email = email.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let emails = txn.open_table(USERS_BY_EMAIL).map_err(backend)?;
            let Some(id) = emails.get(email.as_str()).map_err(backend)? else {
                return Ok(None);
            };
            let users = txn.open_table(USERS).map_err(backend)?;
            match users.get(id.value()).map_err(backend)? {
                Some(v) => decode(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn find_user_by_identity(
        &self,
        idp: &str,
        subject: &str,
    ) -> Result<Option<StoredUser>, StoreError> {
        let key = crate::store::identity_key(idp, subject);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let linked = txn.open_table(USERS_BY_IDENTITY).map_err(backend)?;
            let Some(id) = linked.get(key.as_str()).map_err(backend)? else {
                return Ok(None);
            };
            let users = txn.open_table(USERS).map_err(backend)?;
            match users.get(id.value()).map_err(backend)? {
                Some(v) => decode(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }
}
