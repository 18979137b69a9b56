//! The resource projection (key `"{type}/{guid}"`): docs/contract.md section 6, "Resource". Goals are
//! also folded into their user with the same record.

use events::Kind;
use events::json::Value;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::fold::{Apply, Input, Lww, Stamp, text};
use crate::render::raw;

/// A resource as one envelope carried it: the winner is the greatest (revision, tombstone,
/// updated_at, event id).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub(crate) resource_type: String,
    pub(crate) guid: String,
    pub(crate) user_guid: Option<String>,
    revision: Option<i64>,
    action: Option<String>,
    pub(crate) deleted: bool,
    /// The resource object in canonical JSON: keys sorted, values untouched.
    fields: String,
}

/// The envelope's resource, its stamp and record; `None` for any other event.
pub(crate) fn record(e: &Input<'_>) -> Option<(Stamp, Record)> {
    if e.kind != Kind::Resource {
        return None;
    }
    // The classifier chose the envelope's resource and wrote it into the key: `{type}/{guid}`
    // (types are `[a-z_]+`, so the first `/` ends the type).
    let (resource_type, guid) = e.keys.resource.as_deref()?.split_once('/')?;
    let object = e
        .payload
        .get(resource_type)
        .filter(|o| matches!(o, Value::Object(_)))?;
    let action = text(e.payload.get("action"));
    let guid = guid.to_owned();
    let deleted = action.as_deref() == Some("deleted");
    let stamp = Stamp::resource(e.clock, deleted, e.occurred_at, e.id);
    let user_guid = if resource_type == "user" {
        Some(guid.clone())
    } else {
        text(object.get("user_guid"))
    };
    Some((
        stamp,
        Record {
            resource_type: resource_type.to_string(),
            guid,
            user_guid,
            revision: e.clock,
            action,
            deleted,
            fields: object.to_canonical(),
        },
    ))
}

#[derive(Serialize)]
pub(crate) struct RecordJson<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    resource_type: Option<&'a str>,
    guid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_guid: Option<Option<&'a str>>,
    revision: Option<i64>,
    action: Option<&'a str>,
    deleted: bool,
    fields: Box<RawValue>,
}

impl Record {
    /// As a goal under its user: `{"guid", "revision", "action", "deleted", "fields"}`.
    pub(crate) fn goal_json(&self) -> RecordJson<'_> {
        RecordJson {
            resource_type: None,
            guid: &self.guid,
            user_guid: None,
            revision: self.revision,
            action: self.action.as_deref(),
            deleted: self.deleted,
            fields: raw(&self.fields),
        }
    }

    fn resource_json(&self) -> RecordJson<'_> {
        RecordJson {
            resource_type: Some(&self.resource_type),
            user_guid: Some(self.user_guid.as_deref()),
            ..self.goal_json()
        }
    }
}

/// Resource state: one register.
#[derive(Debug, Clone, Default)]
pub struct Resource {
    record: Lww<Record>,
}

impl Apply for Resource {
    fn apply(&mut self, e: &Input<'_>) {
        if let Some((stamp, r)) = record(e) {
            self.record.offer(stamp, || r);
        }
    }
}

/// What a resource snapshot needs besides its `state`.
pub struct Rendered {
    /// The `state` document.
    pub state: String,
    /// Envelope key.
    pub resource_type: String,
    /// Guid.
    pub guid: String,
    /// Its user.
    pub user_guid: Option<String>,
    /// Whether the winner is a tombstone.
    pub deleted: bool,
}

/// Renders the `state` document; `None` when no event carried a resource (cannot happen for a
/// key that came from the log).
pub fn render(r: &Resource) -> Option<Rendered> {
    let rec = r.record.get()?;
    Some(Rendered {
        state: crate::render::to_json(&rec.resource_json()),
        resource_type: rec.resource_type.clone(),
        guid: rec.guid.clone(),
        user_guid: rec.user_guid.clone(),
        deleted: rec.deleted,
    })
}
