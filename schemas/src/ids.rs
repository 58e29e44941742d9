//! Deterministic ids: the same inputs always give the same id, so a retried webhook, a
//! replayed record or a restarted processor produces the ids it produced before.

use uuid::Uuid;

/// UUIDv5 namespace of every funnelhub id (a fixed random UUID, never change it).
const NAMESPACE: Uuid = Uuid::from_u128(0x6f0c_6f3e_4c1b_4d8e_9a57_2b1e_8e0f_a9d3);

/// A UUIDv5 over `kind` and `parts`, separated by the ASCII unit separator so that
/// `("a:b", "c")` and `("a", "b:c")` never collide.
pub fn deterministic_id(kind: &str, parts: &[&str]) -> String {
    let mut name =
        Vec::with_capacity(kind.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    name.extend_from_slice(kind.as_bytes());
    for part in parts {
        name.push(0x1f);
        name.extend_from_slice(part.as_bytes());
    }
    Uuid::new_v5(&NAMESPACE, &name).to_string()
}

/// The `event_id` of a gateway order event: a function of tenant, gateway, order id,
/// canonical kind (`purchase`, `refund`...) and, when one order can have several events of
/// one kind, a discriminator. The edge stamps it; the matcher recomputes a purchase's id to
/// link its refunds and chargebacks to it.
pub fn order_event_id(
    tenant_id: &str,
    gateway: &str,
    order_id: &str,
    kind: &str,
    discriminator: Option<&str>,
) -> String {
    let mut parts = vec![tenant_id, gateway, order_id, kind];
    parts.extend(discriminator);
    deterministic_id("order", &parts)
}

/// Now, in ms since the Unix epoch (the unit of every timestamp in the schemas).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_id_and_separator_prevents_collisions() {
        let a = deterministic_id("order", &["t1", "stripe", "pi_1", "purchase"]);
        assert_eq!(
            a,
            deterministic_id("order", &["t1", "stripe", "pi_1", "purchase"])
        );
        assert_ne!(
            a,
            deterministic_id("order", &["t1", "stripe", "pi_1", "refund"])
        );
        assert_ne!(
            deterministic_id("k", &["a:b", "c"]),
            deterministic_id("k", &["a", "b:c"])
        );
        assert_ne!(
            deterministic_id("k", &["ab"]),
            deterministic_id("k", &["a", "b"])
        );
        assert_eq!(Uuid::parse_str(&a).expect("uuid").get_version_num(), 5);
    }
}
