//! Roles and users in the embedded store.

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable};

use super::{APPS, EmbeddedStore, ROLES, USERS, USERS_BY_EMAIL, backend, decode, encode};
use crate::domain::Role;
use crate::store::{RoleDelete, RoleStore, StoreError, StoredApp, StoredUser, UserStore};

#[async_trait]
impl RoleStore for EmbeddedStore {
    async fn insert_role(&self, role: &Role) -> Result<(), StoreError> {
        let role = role.clone();
        self.blocking(move |db| {
            let bytes = encode(&role)?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut t = txn.open_table(ROLES).map_err(backend)?;
                if t.get(role.name.as_str()).map_err(backend)?.is_some() {
                    return Err(StoreError::Conflict(format!("role {}", role.name)));
                }
                t.insert(role.name.as_str(), bytes.as_slice())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn get_role(&self, name: &str) -> Result<Option<Role>, StoreError> {
        let name = name.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(ROLES).map_err(backend)?;
            match t.get(name.as_str()).map_err(backend)? {
                Some(v) => decode(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
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

    async fn update_role(&self, role: &Role) -> Result<(), StoreError> {
        let role = role.clone();
        self.blocking(move |db| {
            let bytes = encode(&role)?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut t = txn.open_table(ROLES).map_err(backend)?;
                if t.get(role.name.as_str()).map_err(backend)?.is_none() {
                    return Err(StoreError::NotFound(format!("role {}", role.name)));
                }
                t.insert(role.name.as_str(), bytes.as_slice())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
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
                let mut held_apps: Vec<StoredApp> = Vec::new();
                for entry in apps.iter().map_err(backend)? {
                    let (_, v) = entry.map_err(backend)?;
                    let a: StoredApp = decode(v.value())?;
                    let holds = a.app.roles.contains(&name)
                        || a.app.access_rules.iter().any(|r| r.roles.contains(&name));
                    if holds {
                        held_apps.push(a);
                    }
                }
                let mut held_users: Vec<StoredUser> = Vec::new();
                for entry in users.iter().map_err(backend)? {
                    let (_, v) = entry.map_err(backend)?;
                    let u: StoredUser = decode(v.value())?;
                    if u.user.roles.contains(&name) {
                        held_users.push(u);
                    }
                }
                let held = !(held_apps.is_empty() && held_users.is_empty());
                if held && !detach {
                    // Dropping the transaction unwritten changes nothing.
                    return Ok(RoleDelete::InUse {
                        apps: held_apps.into_iter().map(|a| a.app.id).collect(),
                        users: held_users.into_iter().map(|u| u.user.id).collect(),
                    });
                }
                for mut a in held_apps {
                    a.app.roles.retain(|r| *r != name);
                    for rule in &mut a.app.access_rules {
                        rule.roles.retain(|r| *r != name);
                    }
                    a.app
                        .access_rules
                        .retain(|r| !(r.roles.is_empty() && r.permissions.is_empty()));
                    apps.insert(a.app.id.as_str(), encode(&a)?.as_slice())
                        .map_err(backend)?;
                }
                for mut u in held_users {
                    u.user.roles.retain(|r| *r != name);
                    users
                        .insert(u.user.id.as_str(), encode(&u)?.as_slice())
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
                    return Err(StoreError::Conflict(format!("user {id}")));
                }
                if emails.get(email).map_err(backend)?.is_some() {
                    return Err(StoreError::Conflict(format!("a user with email {email}")));
                }
                users.insert(id, bytes.as_slice()).map_err(backend)?;
                emails.insert(email, id).map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn get_user(&self, id: &str) -> Result<Option<StoredUser>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(USERS).map_err(backend)?;
            match t.get(id.as_str()).map_err(backend)? {
                Some(v) => decode(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
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
            let mut out: Vec<StoredUser> = Vec::new();
            let mut more = false;
            for entry in range {
                let (_, v) = entry.map_err(backend)?;
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push(decode(v.value())?);
            }
            let next = if more {
                out.last().map(|u| u.user.id.clone())
            } else {
                None
            };
            Ok((out, next))
        })
        .await
    }

    async fn update_user(&self, user: &StoredUser) -> Result<(), StoreError> {
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
                    None => return Err(StoreError::NotFound(format!("user {id}"))),
                };
                if old.user.email != user.user.email {
                    if emails
                        .get(user.user.email.as_str())
                        .map_err(backend)?
                        .is_some()
                    {
                        return Err(StoreError::Conflict(format!(
                            "a user with email {}",
                            user.user.email
                        )));
                    }
                    emails.remove(old.user.email.as_str()).map_err(backend)?;
                    emails
                        .insert(user.user.email.as_str(), id)
                        .map_err(backend)?;
                }
                users.insert(id, bytes.as_slice()).map_err(backend)?;
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
                }
                old.is_some()
            };
            txn.commit().map_err(backend)?;
            Ok(existed)
        })
        .await
    }
}
