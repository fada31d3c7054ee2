//! Roles and users in the Redis store: `role:{name}` with the `roles` index,
//! `user:{id}` with the `users` index and the `user_email:{email}` owners.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{Lex, RedisStore, Tx, bounded, get, members_after, mget, transact, unavailable, watch};
use crate::domain::{ChangeEvent, Role};
use crate::store::common::{
    RoleHolders, app_holds_role, encode, identity_keys, order_key_id, page, user_holds_role,
};
use crate::store::{Entity, RoleDelete, RoleStore, StoreError, StoredApp, StoredUser, UserStore};

/// Replaces KEYS[1] by ARGV[1] if it exists, publishing ARGV[2] on KEYS[2].
/// Returns 1, or 0 if it was absent.
/// KEYS: role, channel. ARGV: record, event, the `updatedAt` it was read
/// at. Returns 1, 0 when absent, -1 when changed since it was read.
const UPDATE_IF_PRESENT: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cjson.decode(cur)['updatedAt'] ~= ARGV[3] then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1";

/// KEYS: user, email owner, users index, channel, then the owners of its
/// linked identities. ARGV: record, id, event. Returns 1, 0 when the id is
/// taken, -1 when the email is, -1 - n when the n-th identity is.
const INSERT_USER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
for i = 5, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return -1 - (i - 4) end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
for i = 5, #KEYS do redis.call('SET', KEYS[i], ARGV[2]) end
redis.call('ZADD', KEYS[3], 0, ARGV[2])
redis.call('PUBLISH', KEYS[4], ARGV[3])
return 1";

#[async_trait]
impl RoleStore for RedisStore {
    async fn insert_role(&self, role: &Role) -> Result<(), StoreError> {
        let inserted = self
            .insert_indexed(
                &self.role_key(&role.name),
                &self.key("roles"),
                &role.name,
                &encode(role)?,
                &encode(&ChangeEvent::Roles)?,
            )
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                what: Entity::Role,
                id: role.name.clone(),
            })
        }
    }

    async fn get_role(&self, name: &str) -> Result<Option<Role>, StoreError> {
        self.read(&self.role_key(name)).await
    }

    async fn list_roles(&self) -> Result<Vec<Role>, StoreError> {
        let set = self.key("roles");
        bounded(async {
            let mut c = self.conn().await?;
            let names: Vec<String> = c.zrange(&set, 0, -1).await.map_err(unavailable)?;
            let keys: Vec<String> = names.iter().map(|n| self.role_key(n)).collect();
            mget(&mut c, &keys).await
        })
        .await
    }

    async fn update_role(
        &self,
        role: &Role,
        read_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let (key, channel) = (self.role_key(&role.name), self.channel());
        let body = encode(role)?;
        let event = encode(&ChangeEvent::Roles)?;
        // The same text serde writes into the stored record.
        let read_at = match serde_json::to_value(read_at) {
            Ok(serde_json::Value::String(s)) => s,
            _ => return Err(StoreError::Corrupt("a role's updatedAt".into())),
        };
        bounded(async {
            let mut c = self.conn().await?;
            let done: i64 = redis::Script::new(UPDATE_IF_PRESENT)
                .key(&key)
                .key(&channel)
                .arg(&body)
                .arg(&event)
                .arg(&read_at)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)?;
            match done {
                1 => Ok(()),
                -1 => Err(StoreError::Stale {
                    what: Entity::Role,
                    id: role.name.clone(),
                }),
                _ => Err(StoreError::NotFound {
                    what: Entity::Role,
                    id: role.name.clone(),
                }),
            }
        })
        .await
    }

    async fn delete_role(&self, name: &str, detach: bool) -> Result<RoleDelete, StoreError> {
        let role_key = self.role_key(name);
        let (roles, apps_order, users, channel) = (
            self.key("roles"),
            self.key("apps:order"),
            self.key("users"),
            self.channel(),
        );
        let roles_event = encode(&ChangeEvent::Roles)?;
        let (role_key, roles, apps_order, users, channel, roles_event) = (
            &role_key,
            &roles,
            &apps_order,
            &users,
            &channel,
            &roles_event,
        );
        bounded(async {
            let c = self.conn().await?;
            // The role and both indexes first: a holder created meanwhile
            // changes an index and fails the transaction.
            let watched = [role_key.clone(), apps_order.clone(), users.clone()];
            transact(c, &watched, "a role", move |mut c| async move {
                let step = async {
                    let exists: bool = c.exists(role_key).await.map_err(unavailable)?;
                    if !exists {
                        return Ok(Tx::Done(RoleDelete::NotFound));
                    }
                    let members: Vec<String> =
                        c.zrange(apps_order, 0, -1).await.map_err(unavailable)?;
                    let app_keys: Vec<String> = members
                        .iter()
                        .filter_map(|m| order_key_id(m).map(|id| self.app_key(id)))
                        .collect();
                    let user_ids: Vec<String> =
                        c.zrange(users, 0, -1).await.map_err(unavailable)?;
                    let user_keys: Vec<String> =
                        user_ids.iter().map(|u| self.user_key(u)).collect();
                    watch(&mut c, &app_keys).await?;
                    watch(&mut c, &user_keys).await?;
                    let held = RoleHolders {
                        apps: mget::<StoredApp>(&mut c, &app_keys)
                            .await?
                            .into_iter()
                            .filter(|a| app_holds_role(a, name))
                            .collect(),
                        users: mget::<StoredUser>(&mut c, &user_keys)
                            .await?
                            .into_iter()
                            .filter(|u| user_holds_role(u, name))
                            .collect(),
                    };
                    let detached = match held.settle(name, detach) {
                        Ok(d) => d,
                        Err(in_use) => return Ok(Tx::Done(in_use)),
                    };
                    let mut p = redis::pipe();
                    for a in &detached.apps {
                        p.set(self.app_key(&a.app.id), encode(a)?).ignore();
                        let event = encode(&ChangeEvent::App {
                            id: a.app.id.clone(),
                        })?;
                        p.publish(channel, event).ignore();
                    }
                    for u in &detached.users {
                        p.set(self.user_key(&u.user.id), encode(u)?).ignore();
                    }
                    p.del(role_key).ignore().zrem(roles, name).ignore();
                    p.publish(channel, roles_event).ignore();
                    Ok(Tx::Write(p, RoleDelete::Deleted))
                }
                .await;
                (c, step)
            })
            .await
        })
        .await
    }
}

#[async_trait]
impl UserStore for RedisStore {
    async fn insert_user(&self, user: &StoredUser) -> Result<(), StoreError> {
        let u = &user.user;
        let (key, email_key, set, channel) = (
            self.user_key(&u.id),
            self.email_key(&u.email),
            self.key("users"),
            self.channel(),
        );
        let body = encode(user)?;
        let event = encode(&ChangeEvent::Users)?;
        let identities = identity_keys(user);
        bounded(async {
            let mut c = self.conn().await?;
            let script = redis::Script::new(INSERT_USER);
            let mut call = script.key(&key);
            call.key(&email_key).key(&set).key(&channel);
            for i in &identities {
                call.key(self.linked_key(i));
            }
            let done: i64 = call
                .arg(&body)
                .arg(&u.id)
                .arg(&event)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)?;
            match done {
                1 => Ok(()),
                0 => Err(StoreError::Conflict {
                    what: Entity::User,
                    id: u.id.clone(),
                }),
                -1 => Err(StoreError::Conflict {
                    what: Entity::UserEmail,
                    id: u.email.clone(),
                }),
                n if n < -1 => {
                    let at = usize::try_from(-1 - n).unwrap_or(usize::MAX);
                    Err(StoreError::Conflict {
                        what: Entity::UserIdentity,
                        id: identities
                            .get(at.wrapping_sub(1))
                            .cloned()
                            .unwrap_or_default(),
                    })
                }
                other => Err(StoreError::Unavailable(format!(
                    "unexpected answer {other} from the user insert script"
                ))),
            }
        })
        .await
    }

    async fn get_user(&self, id: &str) -> Result<Option<StoredUser>, StoreError> {
        self.read(&self.user_key(id)).await
    }

    async fn find_user_by_identity(
        &self,
        idp: &str,
        subject: &str,
    ) -> Result<Option<StoredUser>, StoreError> {
        let identity = crate::store::identity_key(idp, subject);
        let owner: Option<String> = bounded(async {
            let mut c = self.conn().await?;
            c.get::<_, Option<String>>(self.linked_key(&identity))
                .await
                .map_err(unavailable)
        })
        .await?;
        match owner {
            // The user may change between the two reads: check the record
            // still holds the identity.
            Some(id) => Ok(self.get_user(&id).await?.filter(|u: &StoredUser| {
                u.user
                    .identities
                    .iter()
                    .any(|i| i.idp == idp && i.subject == subject)
            })),
            None => Ok(None),
        }
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<StoredUser>, StoreError> {
        let owner: Option<String> = bounded(async {
            let mut c = self.conn().await?;
            c.get::<_, Option<String>>(self.email_key(email))
                .await
                .map_err(unavailable)
        })
        .await?;
        match owner {
            // The user may be changed between the two reads: check the email
            // still belongs to the record found.
            Some(id) => Ok(self
                .get_user(&id)
                .await?
                .filter(|u: &StoredUser| u.user.email == email)),
            None => Ok(None),
        }
    }

    async fn list_users(
        &self,
        limit: usize,
        after: Option<String>,
    ) -> Result<(Vec<StoredUser>, Option<String>), StoreError> {
        let set = self.key("users");
        bounded(async {
            let mut c = self.conn().await?;
            let limit = limit.max(1);
            // One past the limit: tells whether more remain.
            let ids = members_after(
                &mut c,
                &set,
                after.as_deref(),
                Lex::Up,
                limit.saturating_add(1),
            )
            .await?;
            let keys: Vec<String> = ids.iter().map(|u| self.user_key(u)).collect();
            let users: Vec<StoredUser> = mget(&mut c, &keys).await?;
            Ok(page(users, limit, |u| u.user.id.clone()))
        })
        .await
    }

    async fn update_user(
        &self,
        user: &StoredUser,
        read_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let id = &user.user.id;
        let (key, new_email_key, channel) = (
            self.user_key(id),
            self.email_key(&user.user.email),
            self.channel(),
        );
        let event = encode(&ChangeEvent::Users)?;
        let (key, new_email_key, channel, event) = (&key, &new_email_key, &channel, &event);
        let after = identity_keys(user);
        let after = &after;
        bounded(async {
            let c = self.conn().await?;
            let mut watched = vec![key.clone(), new_email_key.clone()];
            watched.extend(after.iter().map(|i| self.linked_key(i)));
            transact(c, &watched, "a user", move |mut c| async move {
                let step = async {
                    let Some(old) = get::<StoredUser>(&mut c, key).await? else {
                        return Err(StoreError::NotFound {
                            what: Entity::User,
                            id: id.clone(),
                        });
                    };
                    if old.user.updated_at != read_at {
                        return Err(StoreError::Stale {
                            what: Entity::User,
                            id: id.clone(),
                        });
                    }
                    let mut p = redis::pipe();
                    if old.user.email != user.user.email {
                        let taken: Option<String> =
                            c.get(new_email_key).await.map_err(unavailable)?;
                        if taken.is_some() {
                            return Err(StoreError::Conflict {
                                what: Entity::UserEmail,
                                id: user.user.email.clone(),
                            });
                        }
                        p.del(self.email_key(&old.user.email))
                            .ignore()
                            .set(new_email_key, id)
                            .ignore();
                    }
                    let before = identity_keys(&old);
                    for i in after.iter().filter(|i| !before.contains(i)) {
                        let owner: Option<String> =
                            c.get(self.linked_key(i)).await.map_err(unavailable)?;
                        if owner.is_some_and(|o| &o != id) {
                            return Err(StoreError::Conflict {
                                what: Entity::UserIdentity,
                                id: i.clone(),
                            });
                        }
                        p.set(self.linked_key(i), id).ignore();
                    }
                    for i in before.iter().filter(|i| !after.contains(i)) {
                        p.del(self.linked_key(i)).ignore();
                    }
                    p.set(key, encode(user)?)
                        .ignore()
                        .publish(channel, event)
                        .ignore();
                    Ok(Tx::Write(p, ()))
                }
                .await;
                (c, step)
            })
            .await
        })
        .await
    }

    async fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        let (key, set, channel) = (self.user_key(id), self.key("users"), self.channel());
        let event = encode(&ChangeEvent::Users)?;
        let (key, set, channel, event) = (&key, &set, &channel, &event);
        bounded(async {
            let c = self.conn().await?;
            let watched = [key.clone()];
            transact(c, &watched, "a user", move |mut c| async move {
                let step = async {
                    let Some(old) = get::<StoredUser>(&mut c, key).await? else {
                        return Ok(Tx::Done(false));
                    };
                    let mut p = redis::pipe();
                    for i in identity_keys(&old) {
                        p.del(self.linked_key(&i)).ignore();
                    }
                    p.del(key)
                        .ignore()
                        .del(self.email_key(&old.user.email))
                        .ignore()
                        .zrem(set, id)
                        .ignore()
                        .publish(channel, event)
                        .ignore();
                    Ok(Tx::Write(p, true))
                }
                .await;
                (c, step)
            })
            .await
        })
        .await
    }
}
