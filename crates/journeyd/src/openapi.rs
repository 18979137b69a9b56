//! `GET /openapi.json`: the HTTP interface as OpenAPI 3.1, built here from one table of routes.
//! A test (`every_documented_operation_is_a_real_route`) requests every operation in the table
//! from the real router and fails if one is not routed or answers a status the table does not
//! list. It also compares the table with every method of every `.route(...)` in the source, and
//! fails on a `.route(` it cannot read, so the two cannot drift.

use serde_json::{Value, json};

/// One operation: method, path, summary, parameters (name, in, description), responses.
pub(crate) struct Operation {
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) params: &'static [(&'static str, &'static str, &'static str)],
    pub(crate) responses: &'static [(u16, &'static str, Option<&'static str>)],
}

const DOC: Option<&str> = Some("Snapshot");
const ERR: Option<&str> = Some("Error");

/// What both webhook routes answer.
const WEBHOOK_RESPONSES: &[(u16, &str, Option<&str>)] = &[
    (
        204,
        "Stored (new or duplicate), after a durable commit",
        None,
    ),
    (
        202,
        "Quarantined: kept whole with the reason",
        Some("Quarantined"),
    ),
    (401, "Missing or invalid credentials; nothing stored", ERR),
    (
        408,
        "The body did not arrive within the body timeout; nothing stored",
        ERR,
    ),
    (413, "Body over the limit", ERR),
    (
        503,
        "The store cannot take it now (Retry-After); nothing acknowledged",
        ERR,
    ),
];

/// A point read's `400`.
const PATH_NOT_UTF8: (u16, &str, Option<&str>) = (
    400,
    "A path segment that is not UTF-8 once percent-decoded, or a query parameter (the route takes none)",
    ERR,
);

/// The `400` of a route that takes no parameters.
const NO_PARAMETERS: (u16, &str, Option<&str>) = (
    400,
    "A query parameter: this route takes none (the message names it)",
    ERR,
);

/// A point read's `503`: the key is in the log, too large to fold for a read (decision 0013),
/// and not projected yet.
const NOT_PROJECTED_YET: (u16, &str, Option<&str>) = (
    503,
    "The key has more events than a read folds and the projector has not written it yet (Retry-After)",
    ERR,
);

/// Every route of the daemon.
pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "post",
        path: "/webhooks/mx",
        summary: "Receive an MX Platform webhook (one object, or an analytics array bare or as {\"_json\": [...]})",
        params: &[],
        responses: WEBHOOK_RESPONSES,
    },
    Operation {
        method: "post",
        path: "/webhooks/mobile-journeys",
        summary: "Receive an Esendex Mobile Journeys webhook (an array of events, or one event)",
        params: &[],
        responses: WEBHOOK_RESPONSES,
    },
    Operation {
        method: "get",
        path: "/v1/journeys",
        summary: "Journeys, filtered, by correlation id",
        params: &[
            ("status", "query", "created | opened | paid | completed"),
            ("journey_id", "query", "Only this journey definition"),
            (
                "customer_reference",
                "query",
                "Only this customer reference",
            ),
            ("after", "query", "Cursor: the `next` of the previous page"),
            (
                "limit",
                "query",
                "At most this many (default 50, at most 1000)",
            ),
        ],
        responses: &[
            (
                200,
                "{\"items\": [Snapshot], \"next\": cursor or null}",
                Some("SnapshotPage"),
            ),
            (
                400,
                "A bad or unknown query parameter: the message names it, and an unknown one with those the route takes",
                ERR,
            ),
        ],
    },
    Operation {
        method: "get",
        path: "/v1/journeys/{id}",
        summary: "One journey's state",
        params: &[("id", "path", "The journey's correlationId")],
        responses: &[
            (200, "The snapshot", DOC),
            PATH_NOT_UTF8,
            (404, "Unknown journey", ERR),
            NOT_PROJECTED_YET,
        ],
    },
    Operation {
        method: "get",
        path: "/v1/journeys/{id}/events",
        summary: "One journey's events, in arrival order",
        params: &[
            ("id", "path", "The journey's correlationId"),
            ("after", "query", "Only seq greater than this"),
            (
                "limit",
                "query",
                "At most this many (default 100, at most 1000)",
            ),
        ],
        responses: &[
            (
                200,
                "{\"events\": [EventRecord], \"next_after\": seq or null}",
                Some("EventPage"),
            ),
            (
                400,
                "A bad or unknown query parameter: the message names it, and an unknown one with those the route takes",
                ERR,
            ),
            (404, "Unknown journey", ERR),
        ],
    },
    Operation {
        method: "get",
        path: "/v1/members/{guid}",
        summary: "One MX member's state",
        params: &[("guid", "path", "The member_guid")],
        responses: &[
            (200, "The snapshot", DOC),
            PATH_NOT_UTF8,
            (404, "Unknown member", ERR),
            NOT_PROJECTED_YET,
        ],
    },
    Operation {
        method: "get",
        path: "/v1/users/{guid}",
        summary: "One MX user's state",
        params: &[("guid", "path", "The user_guid")],
        responses: &[
            (200, "The snapshot", DOC),
            PATH_NOT_UTF8,
            (404, "Unknown user", ERR),
            NOT_PROJECTED_YET,
        ],
    },
    Operation {
        method: "get",
        path: "/v1/resources/{resource_type}/{guid}",
        summary: "One MX resource's state",
        params: &[
            (
                "resource_type",
                "path",
                "The envelope key: goal, account, ...",
            ),
            ("guid", "path", "The resource's guid"),
        ],
        responses: &[
            (200, "The snapshot", DOC),
            PATH_NOT_UTF8,
            (404, "Unknown resource", ERR),
            NOT_PROJECTED_YET,
        ],
    },
    Operation {
        method: "get",
        path: "/v1/events",
        summary: "The event log in arrival order",
        params: &[
            ("after", "query", "Only seq greater than this"),
            (
                "limit",
                "query",
                "At most this many (default 100, at most 1000)",
            ),
        ],
        responses: &[
            (
                200,
                "{\"events\": [EventRecord], \"next_after\": seq or null}",
                Some("EventPage"),
            ),
            (
                400,
                "A bad or unknown query parameter: the message names it, and an unknown one with those the route takes",
                ERR,
            ),
        ],
    },
    Operation {
        method: "get",
        path: "/v1/stats",
        summary: "Counts for dashboards: events, journeys by status, members, users, resources, unknown, quarantined, log head, projector checkpoint and lag",
        params: &[],
        responses: &[(200, "The stats document", Some("Stats")), NO_PARAMETERS],
    },
    Operation {
        method: "get",
        path: "/v1/quarantine",
        summary: "Quarantined bodies without their bytes, oldest first: id, received_at, source, reason, size, times_received, last_received_at",
        params: &[
            (
                "after",
                "query",
                "Only ids greater than this: the `next` of the previous page",
            ),
            (
                "limit",
                "query",
                "At most this many (default 100, at most 1000)",
            ),
        ],
        responses: &[
            (
                200,
                "{\"items\": [QuarantineEntry], \"next\": id or null}",
                None,
            ),
            (
                400,
                "A bad or unknown query parameter: the message names it, and an unknown one with those the route takes",
                ERR,
            ),
        ],
    },
    Operation {
        method: "get",
        path: "/v1/stream",
        summary: "Server-Sent Events, one per snapshot change: id = seq, event = projection, data = {\"key\", \"status\"?, \"seq\"}; resumable with Last-Event-ID",
        params: &[
            ("Last-Event-ID", "header", "Resume after this seq"),
            (
                "lastEventId",
                "query",
                "The same, for clients that cannot send the header (EventSource polyfills); the header wins",
            ),
        ],
        responses: &[
            (200, "text/event-stream", None),
            (
                400,
                "A bad or unknown query parameter: the message names it",
                ERR,
            ),
            (
                503,
                "As many streams are open as --max-streams allows (Retry-After)",
                ERR,
            ),
        ],
    },
    Operation {
        method: "get",
        path: "/healthz",
        summary: "Alive",
        params: &[],
        responses: &[(200, "{\"status\": \"ok\"}", None)],
    },
    Operation {
        method: "get",
        path: "/readyz",
        summary: "Ready: the database answers and the projector runs",
        params: &[],
        responses: &[
            (200, "{\"database\": true, \"projector\": true}", None),
            (503, "Not ready", None),
        ],
    },
    Operation {
        method: "get",
        path: "/metrics",
        summary: "Prometheus text exposition",
        params: &[],
        responses: &[(200, "Metrics", None)],
    },
    Operation {
        method: "get",
        path: "/openapi.json",
        summary: "This document",
        params: &[],
        responses: &[(200, "OpenAPI 3.1", None)],
    },
];

/// A parameter's schema. Query values are text; an empty one is the same as none (api.rs).
fn schema(path: &str, name: &str) -> Value {
    match name {
        "limit" => {
            json!({"type": "string", "pattern": "^([1-9][0-9]{0,8})?$", "description": "A count of at least 1, or empty"})
        }
        "after" | "lastEventId" if path != "/v1/journeys" => {
            json!({"type": "string", "pattern": "^(-?[0-9]{1,18})?$", "description": "A seq, or empty"})
        }
        "status" => json!({"enum": ["", "created", "opened", "paid", "completed"]}),
        _ => json!({"type": "string"}),
    }
}

/// The OpenAPI document.
pub(crate) fn document() -> String {
    let mut paths = serde_json::Map::new();
    for op in OPERATIONS {
        let params: Vec<Value> = op
            .params
            .iter()
            .map(|(name, place, description)| {
                json!({"name": name, "in": place, "required": *place == "path", "description": description, "schema": schema(op.path, name)})
            })
            .collect();
        let mut responses = serde_json::Map::new();
        for (status, description, schema) in op.responses {
            let mut r = json!({"description": description});
            if let Some(s) = schema {
                r["content"] = json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{s}")}}});
            }
            responses.insert(status.to_string(), r);
        }
        let mut operation =
            json!({"summary": op.summary, "parameters": params, "responses": responses});
        if op.path.starts_with("/v1/") {
            operation["security"] = json!([{"apiToken": []}, {}]);
            responses.insert(
                "401".into(),
                json!({"description": "--api-token is set and the request does not carry it", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
            );
            operation["responses"] = Value::Object(responses.clone());
        }
        if op.method == "get" {
            let mut all = operation["responses"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            all.insert(
                "500".into(),
                json!({"description": "The database could not be read; details are in the daemon's log", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
            );
            operation["responses"] = Value::Object(all);
        }
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    let doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "journeyd", "version": env!("CARGO_PKG_VERSION"), "description": "Webhook-to-state projector for MX Platform and Esendex Mobile Journeys. See docs/api.md."},
        "paths": paths,
        "components": {
            "securitySchemes": {"apiToken": {"type": "http", "scheme": "bearer", "description": "--api-token, when set"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Quarantined": {"type": "object", "properties": {"quarantined": {"const": true}, "reason": {"type": "string"}}},
                "Snapshot": {"type": "object", "required": ["key", "state", "meta"], "properties": {
                    "key": {"type": "string"},
                    "state": {"type": "object", "description": "The projection's state; fields in docs/projections.md"},
                    "meta": {"type": "object", "properties": {"event_count": {"type": "integer"}, "last_seq": {"type": "integer"}, "updated_at": {"type": "string", "format": "date-time"}}}
                }},
                "SnapshotPage": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Snapshot"}}, "next": {"type": ["string", "null"]}}},
                "EventRecord": {"type": "object", "properties": {
                    "seq": {"type": "integer"}, "event_id": {"type": "string", "format": "uuid"}, "source": {"enum": ["mx", "mobile-journeys"]},
                    "kind": {"type": "string"}, "keys": {"type": "object"}, "occurred_at": {"type": ["string", "null"], "format": "date-time"},
                    "received_at": {"type": "string", "format": "date-time"}, "payload": {"description": "The event's JSON as received"}
                }},
                "EventPage": {"type": "object", "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/EventRecord"}}, "next_after": {"type": ["integer", "null"]}}},
                "Stats": {"type": "object", "properties": {
                    "events": {"type": "integer"}, "journeys": {"type": "object", "properties": {"total": {"type": "integer"}, "by_status": {"type": "object"}}},
                    "members": {"type": "integer"}, "users": {"type": "integer"}, "resources": {"type": "integer"}, "unknown": {"type": "integer"},
                    "quarantined": {"type": "integer"}, "log_head": {"type": "integer"},
                    "projector": {"type": "object", "properties": {"checkpoint": {"type": "integer"}, "lag": {"type": "integer"}}}
                }}
            }
        }
    });
    doc.to_string()
}
