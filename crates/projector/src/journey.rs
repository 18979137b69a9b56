//! The journey projection (key `correlation_id`): docs/contract.md section 6, "Journey".

use std::collections::{BTreeMap, BTreeSet};

use events::Kind;
use events::timestamp::{Millis, parse_rfc3339};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::fold::{
    Apply, Input, Lww, SortedMap, SortedSet, Stamp, boolean, canonical, decimal, exact_sum, get,
    keep_max, keep_min, strings, text,
};
use crate::render::{raw, time};

/// Journey state built from order-free parts.
#[derive(Debug, Clone, Default)]
pub struct Journey {
    journey_id: Lww<String>,
    customer_reference: Lww<String>,
    url: Lww<String>,
    parameters: Lww<String>,
    link_created_at: Option<Millis>,
    first_occurred_at: Option<Millis>,
    last_occurred_at: Option<Millis>,
    sessions: SortedSet<String>,
    payments: SortedMap<String, Lww<Payment>>,
    documents: SortedMap<String, Lww<Document>>,
    stages: SortedMap<String, Reached>,
    session_data: Lww<String>,
    generated: SortedSet<String>,
    downloaded: SortedSet<String>,
    uploaded: SortedSet<String>,
    transaction_ids: SortedSet<String>,
}

/// When a stage was first and last reached.
type Reached = (Option<Millis>, Option<Millis>);

#[derive(Debug, Clone, PartialEq)]
struct Payment {
    transaction_time: Option<Millis>,
    authorised: Option<bool>,
    /// The amount as sent: a number's text or a string, untouched (docs/contract.md section 4).
    amount: Option<String>,
    /// Its value, for `amount_authorised`, when it is a decimal that fits (28 digits).
    value: Option<Decimal>,
    currency: Option<String>,
    card_type: Option<String>,
    card_number: Option<String>,
    authorisation_code: Option<String>,
    cardholder_name: Option<String>,
    occurred_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq)]
struct Document {
    template_id: Option<String>,
    category: Option<String>,
    generated_at: Option<Millis>,
}

impl Apply for Journey {
    fn apply(&mut self, e: &Input<'_>) {
        let stamp = Stamp::time(e.clock, e.id);
        let Some(data) = e.payload.get("data") else {
            return;
        };
        self.journey_id
            .offer_some(stamp, text(data.get("journeyId")));
        self.customer_reference
            .offer_some(stamp, text(data.get("customerReference")));
        self.url.offer_some(stamp, text(data.get("url")));
        self.parameters
            .offer_some(stamp, canonical(data.get("parameters")));
        keep_min(&mut self.first_occurred_at, e.occurred_at);
        keep_max(&mut self.last_occurred_at, e.occurred_at);
        if let Some(session) = text(data.get("sessionId")) {
            self.sessions.insert(session);
        }
        match e.kind {
            Kind::LinkCreated => keep_min(&mut self.link_created_at, e.occurred_at),
            Kind::PaymentAttempt => {
                let Some(detail) = data.get("paymentDetail") else {
                    return;
                };
                let Some(id) = text(detail.get("transactionId")) else {
                    return;
                };
                self.transaction_ids.insert(id.clone());
                self.payments.entry_or_default(id).offer(stamp, || Payment {
                    transaction_time: detail
                        .get("transactionTime")
                        .and_then(|v| v.as_str())
                        .and_then(parse_rfc3339),
                    authorised: boolean(detail.get("authorised")),
                    amount: text(detail.get("amount")),
                    value: decimal(detail.get("amount")),
                    currency: text(detail.get("currency")),
                    card_type: text(detail.get("cardType")),
                    card_number: text(detail.get("cardNumber")),
                    authorisation_code: text(detail.get("authorisationCode")),
                    cardholder_name: text(detail.get("cardholderName")),
                    occurred_at: e.occurred_at,
                });
            }
            Kind::DocumentGenerated => {
                let Some(id) = text(data.get("documentId")) else {
                    return;
                };
                self.generated.insert(id.clone());
                self.documents
                    .entry_or_default(id)
                    .offer(stamp, || Document {
                        template_id: text(data.get("templateId")),
                        category: text(data.get("documentCategory")),
                        generated_at: e.occurred_at,
                    });
            }
            Kind::Stage => {
                if let Some(name) = text(data.get("stageName")) {
                    let (first, last) = self.stages.entry_or_default(name);
                    keep_min(first, e.occurred_at);
                    keep_max(last, e.occurred_at);
                }
                self.session_data
                    .offer_some(stamp, canonical(data.get("sessionData")));
                self.generated
                    .extend(strings(data.get("generatedDocumentIds")));
                self.downloaded
                    .extend(strings(data.get("downloadedDocumentIds")));
                self.uploaded
                    .extend(strings(data.get("uploadedDocumentIds")));
                self.transaction_ids
                    .extend(strings(get(e.payload, &["data", "transactionIds"])));
            }
            _ => {}
        }
    }
}

/// The derived status: the highest that holds.
pub fn status(j: &Journey, completing: &BTreeSet<String>) -> &'static str {
    if j.stages.keys().any(|s| completing.contains(s)) {
        "completed"
    } else if j
        .payments
        .values()
        .any(|p| p.get().is_some_and(|p| p.authorised == Some(true)))
    {
        "paid"
    } else if !j.sessions.is_empty() {
        "opened"
    } else {
        "created"
    }
}

#[derive(Serialize)]
struct StateJson<'a> {
    correlation_id: &'a str,
    journey_id: Option<&'a str>,
    customer_reference: Option<&'a str>,
    status: &'static str,
    url: Option<&'a str>,
    parameters: Option<Box<RawValue>>,
    link_created_at: Option<String>,
    first_occurred_at: Option<String>,
    last_occurred_at: Option<String>,
    sessions: &'a SortedSet<String>,
    payments: Vec<PaymentJson<'a>>,
    amount_authorised: BTreeMap<&'a str, Option<String>>,
    documents: Vec<DocumentJson<'a>>,
    stages: Vec<StageJson<'a>>,
    session_data: Option<Box<RawValue>>,
    document_ids: DocumentIds<'a>,
    transaction_ids: &'a SortedSet<String>,
    event_count: i64,
}

#[derive(Serialize)]
struct PaymentJson<'a> {
    transaction_id: &'a str,
    transaction_time: Option<String>,
    authorised: Option<bool>,
    amount: Option<&'a str>,
    currency: Option<&'a str>,
    card_type: Option<&'a str>,
    card_number: Option<&'a str>,
    authorisation_code: Option<&'a str>,
    cardholder_name: Option<&'a str>,
    occurred_at: Option<String>,
}

#[derive(Serialize)]
struct DocumentJson<'a> {
    document_id: &'a str,
    template_id: Option<&'a str>,
    category: Option<&'a str>,
    generated_at: Option<String>,
}

#[derive(Serialize)]
struct StageJson<'a> {
    name: &'a str,
    first_reached_at: Option<String>,
    last_reached_at: Option<String>,
}

#[derive(Serialize)]
struct DocumentIds<'a> {
    generated: &'a SortedSet<String>,
    downloaded: &'a SortedSet<String>,
    uploaded: &'a SortedSet<String>,
}

/// What a journey snapshot needs besides its `state`.
pub struct Rendered {
    /// The `state` document.
    pub state: String,
    /// The derived status.
    pub status: &'static str,
    /// Winning `journey_id`.
    pub journey_id: Option<String>,
    /// Winning `customer_reference`.
    pub customer_reference: Option<String>,
    /// `last_occurred_at`.
    pub last_activity: Option<Millis>,
}

/// Renders the `state` document: compact, keys in a fixed order.
pub fn render(key: &str, j: &Journey, event_count: i64, completing: &BTreeSet<String>) -> Rendered {
    let status = status(j, completing);
    let mut payments: Vec<(&String, &Payment)> = j
        .payments
        .iter()
        .filter_map(|(id, p)| p.get().map(|p| (id, p)))
        .collect();
    payments.sort_by(|a, b| (a.1.transaction_time, a.0).cmp(&(b.1.transaction_time, b.0)));
    // Every currency with an authorised payment has its key. Its sum is exact or unknown
    // (`null`): one authorised amount that is missing, not a number, or too large or precise to
    // sum exactly makes it unknown, rather than a total that leaves the amount out.
    let mut amount_authorised: BTreeMap<&str, Option<Decimal>> = BTreeMap::new();
    for (_, p) in &payments {
        if let (Some(true), Some(currency)) = (p.authorised, p.currency.as_deref()) {
            let sum = amount_authorised
                .entry(currency)
                .or_insert(Some(Decimal::ZERO));
            *sum = sum.zip(p.value).and_then(|(s, v)| exact_sum(s, v));
        }
    }
    let mut stages: Vec<(&String, &Reached)> = j.stages.iter().collect();
    stages.sort_by(|a, b| (a.1.0, a.0).cmp(&(b.1.0, b.0)));
    let doc = StateJson {
        correlation_id: key,
        journey_id: j.journey_id.get().map(String::as_str),
        customer_reference: j.customer_reference.get().map(String::as_str),
        status,
        url: j.url.get().map(String::as_str),
        parameters: j.parameters.get().map(|s| raw(s)),
        link_created_at: time(j.link_created_at),
        first_occurred_at: time(j.first_occurred_at),
        last_occurred_at: time(j.last_occurred_at),
        sessions: &j.sessions,
        payments: payments
            .iter()
            .map(|(id, p)| PaymentJson {
                transaction_id: id,
                transaction_time: time(p.transaction_time),
                authorised: p.authorised,
                amount: p.amount.as_deref(),
                currency: p.currency.as_deref(),
                card_type: p.card_type.as_deref(),
                card_number: p.card_number.as_deref(),
                authorisation_code: p.authorisation_code.as_deref(),
                cardholder_name: p.cardholder_name.as_deref(),
                occurred_at: time(p.occurred_at),
            })
            .collect(),
        amount_authorised: amount_authorised
            .into_iter()
            .map(|(c, d)| (c, d.map(|d| d.to_string())))
            .collect(),
        documents: j
            .documents
            .iter()
            .filter_map(|(id, d)| d.get().map(|d| (id, d)))
            .map(|(id, d)| DocumentJson {
                document_id: id,
                template_id: d.template_id.as_deref(),
                category: d.category.as_deref(),
                generated_at: time(d.generated_at),
            })
            .collect(),
        stages: stages
            .into_iter()
            .map(|(name, (first, last))| StageJson {
                name,
                first_reached_at: time(*first),
                last_reached_at: time(*last),
            })
            .collect(),
        session_data: j.session_data.get().map(|s| raw(s)),
        document_ids: DocumentIds {
            generated: &j.generated,
            downloaded: &j.downloaded,
            uploaded: &j.uploaded,
        },
        transaction_ids: &j.transaction_ids,
        event_count,
    };
    Rendered {
        state: crate::render::to_json(&doc),
        status,
        journey_id: j.journey_id.get().cloned(),
        customer_reference: j.customer_reference.get().cloned(),
        last_activity: j.last_occurred_at,
    }
}
