//! A dispatch request as Meta's server event (`data[]` of `POST /{pixel_id}/events`).
//!
//! Identifiers arrive hashed by the edge with Meta's normalization rules
//! (`schemas/src/identity.rs`): they go to the hashed `user_data` keys as they are. `fbc`,
//! `fbp`, `client_ip_address` and `client_user_agent` are sent raw, as Meta requires.
//! `event_time` is converted from milliseconds to seconds.

use funnelhub_schemas::derived::CapiDispatchRequest;
use serde::Serialize;

/// One server event.
#[derive(Debug, Serialize)]
pub struct ServerEvent<'a> {
    pub event_name: &'a str,
    /// Unix seconds.
    pub event_time: i64,
    pub event_id: &'a str,
    pub action_source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source_url: Option<&'a str>,
    pub user_data: UserData<'a>,
    #[serde(skip_serializing_if = "CustomData::is_empty")]
    pub custom_data: CustomData<'a>,
}

/// `user_data`: hashed customer information plus the raw browser identifiers.
#[derive(Debug, Default, Serialize)]
pub struct UserData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub em: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ph: Option<&'a str>,
    #[serde(rename = "fn", skip_serializing_if = "Option::is_none")]
    pub first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ln: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub st: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ge: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip_address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fbc: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fbp: Option<&'a str>,
}

/// `custom_data`: what was bought.
#[derive(Debug, Default, Serialize)]
pub struct CustomData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub content_ids: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<&'a str>,
}

impl CustomData<'_> {
    fn is_empty(&self) -> bool {
        self.value.is_none()
            && self.currency.is_none()
            && self.content_ids.is_empty()
            && self.order_id.is_none()
    }
}

impl<'a> ServerEvent<'a> {
    /// The server event of `request`.
    pub fn of(request: &'a CapiDispatchRequest) -> ServerEvent<'a> {
        let identity = &request.identity;
        let clicks = &request.click_ids;
        ServerEvent {
            event_name: &request.event_name,
            event_time: request.event_time.div_euclid(1000),
            event_id: &request.event_id,
            action_source: &request.action_source,
            event_source_url: request.event_source_url.as_deref(),
            user_data: UserData {
                em: identity.email_hash.as_deref(),
                ph: identity.phone_hash.as_deref(),
                first_name: identity.first_name_hash.as_deref(),
                ln: identity.last_name_hash.as_deref(),
                ct: identity.city_hash.as_deref(),
                st: identity.state_hash.as_deref(),
                zp: identity.zip_hash.as_deref(),
                country: identity.country_hash.as_deref(),
                ge: identity.gender_hash.as_deref(),
                db: identity.birth_date_hash.as_deref(),
                external_id: identity.external_id_hash.as_deref(),
                client_ip_address: request.client_ip.as_deref(),
                client_user_agent: request.user_agent.as_deref(),
                fbc: clicks.fbc.as_deref(),
                fbp: clicks.fbp.as_deref(),
            },
            custom_data: CustomData {
                value: request.value,
                currency: request.currency.as_deref(),
                content_ids: &request.content_ids,
                content_type: (!request.content_ids.is_empty()).then_some("product"),
                order_id: request.order_id.as_deref(),
            },
        }
    }
}

/// The request body: `{"data": [...], "test_event_code": ...}`.
#[derive(Debug, Serialize)]
pub struct EventsBody<'a> {
    pub data: Vec<ServerEvent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_event_code: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use funnelhub_schemas::identity::{PhoneRules, RawIdentity};
    use funnelhub_schemas::testing::sample_derived;
    use serde_json::json;

    use super::*;

    /// Meta's published examples, through the edge's normalization into the payload.
    #[test]
    fn user_data_carries_metas_test_vectors_and_raw_browser_ids() {
        let mut request = sample_derived().2;
        request.identity = RawIdentity {
            email: Some(" John_Smith@gmail.com ".into()),
            phone: Some("+1 (650) 555-1212".into()),
            first_name: Some("Mary".into()),
            ..RawIdentity::default()
        }
        .hash(&PhoneRules::default());
        request.click_ids.fbc =
            Some("fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890".into());
        request.click_ids.fbp = Some("fb.1.1558571054389.1098115397".into());
        request.client_ip = Some("2001:db8::1".into());
        request.user_agent = Some("Mozilla/5.0".into());
        request.event_time = 1_700_000_000_999;
        let event = serde_json::to_value(ServerEvent::of(&request)).expect("serializes");
        let user = &event["user_data"];
        assert_eq!(
            user["em"],
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
        );
        assert_eq!(
            user["ph"],
            "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
        );
        assert_eq!(
            user["fn"],
            "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"
        );
        assert_eq!(
            user["fbc"],
            "fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890"
        );
        assert_eq!(user["fbp"], "fb.1.1558571054389.1098115397");
        assert_eq!(user["client_ip_address"], "2001:db8::1");
        assert_eq!(user["client_user_agent"], "Mozilla/5.0");
        assert!(user.get("ln").is_none(), "absent keys are left out: {user}");
        assert_eq!(event["event_time"], 1_700_000_000, "seconds, not ms");
    }

    #[test]
    fn custom_data_for_a_purchase_and_none_for_a_page_view() {
        let mut request = sample_derived().2;
        request.event_name = "Purchase".into();
        request.value = Some(197.0);
        request.currency = Some("BRL".into());
        request.content_ids = vec!["curso-1".into()];
        request.order_id = Some("HP123".into());
        let event = serde_json::to_value(ServerEvent::of(&request)).expect("serializes");
        assert_eq!(
            event["custom_data"],
            json!({"value": 197.0, "currency": "BRL", "content_ids": ["curso-1"],
                   "content_type": "product", "order_id": "HP123"})
        );
        request.value = None;
        request.currency = None;
        request.content_ids.clear();
        request.order_id = None;
        let event = serde_json::to_value(ServerEvent::of(&request)).expect("serializes");
        assert!(event.get("custom_data").is_none(), "{event}");
    }
}
