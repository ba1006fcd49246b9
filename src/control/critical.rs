//! The seed's critical query paths and the index each one is meant to use.
//!
//! Shared by `pgsplit analyze` (the "index usage on critical paths" target) and the tests, so
//! both check the same statements. Literal values, not $n, so plain EXPLAIN plans them on any
//! PostgreSQL version.

/// A critical query and the index its plan should name.
#[derive(Debug, Clone, Copy)]
pub struct CriticalQuery {
    pub name: &'static str,
    pub sql: &'static str,
    pub index: &'static str,
}

/// Dashboard: active leads, newest first, then by score.
pub const ACTIVE_LEADS: CriticalQuery = CriticalQuery {
    name: "active leads by recency and score",
    sql: "SELECT id, contact_id, name, ml_score, created_at FROM leads \
          WHERE status = 'active' ORDER BY created_at DESC, ml_score DESC LIMIT 50",
    index: "idx_leads_created_scored",
};

/// Hot leads: active with ml_score >= 7, best first.
pub const HOT_LEADS: CriticalQuery = CriticalQuery {
    name: "hot leads",
    sql: "SELECT id, contact_id, name, ml_score, created_at FROM leads \
          WHERE status = 'active' AND ml_score >= 7 ORDER BY ml_score DESC, created_at DESC LIMIT 50",
    index: "idx_leads_hot_leads",
};

/// Property search by price band, bedrooms and bathrooms, cheapest first.
pub const PROPERTY_SEARCH: CriticalQuery = CriticalQuery {
    name: "property search by price/bedrooms/bathrooms",
    sql: "SELECT id, address, price, bedrooms, bathrooms, property_type FROM properties \
          WHERE status = 'Active' AND price BETWEEN 300000 AND 450000 AND bedrooms >= 3 AND bathrooms >= 2 \
          ORDER BY price LIMIT 50",
    index: "idx_properties_search_common",
};

/// Listing page: newest active listings with the card fields (index-only scan).
pub const LISTING_PAGE: CriticalQuery = CriticalQuery {
    name: "listing page",
    sql:
        "SELECT address, price, bedrooms, bathrooms, sqft, property_type, neighborhood, created_at \
          FROM properties WHERE status = 'Active' ORDER BY created_at DESC, price LIMIT 24",
    index: "idx_properties_listing_page",
};

/// Lead full-text search; the expression must match idx_leads_search_gin's exactly.
pub const LEAD_SEARCH: CriticalQuery = CriticalQuery {
    name: "lead full-text search",
    sql: "SELECT id, contact_id, name, email, phone FROM leads \
          WHERE to_tsvector('english'::regconfig, coalesce(name, '') || ' ' || coalesce(email, '') || ' ' || coalesce(phone, '')) \
          @@ plainto_tsquery('english', 'Okonkwo') LIMIT 20",
    index: "idx_leads_search_gin",
};

/// All critical paths, in the seed's order.
pub const ALL: [CriticalQuery; 5] = [
    ACTIVE_LEADS,
    HOT_LEADS,
    PROPERTY_SEARCH,
    LISTING_PAGE,
    LEAD_SEARCH,
];

/// Every "Index Name" in an EXPLAIN (FORMAT JSON) plan, depth first.
pub fn plan_indexes(plan: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(plan, &mut |node| {
        if let Some(name) = node.get("Index Name").and_then(|v| v.as_str()) {
            out.push(name.to_string());
        }
    });
    out
}

/// Calls `f` on every plan node (objects with a "Node Type") of an EXPLAIN (FORMAT JSON) result.
pub fn walk(
    value: &serde_json::Value,
    f: &mut dyn FnMut(&serde_json::Map<String, serde_json::Value>),
) {
    match value {
        serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, f)),
        serde_json::Value::Object(map) => {
            if map.contains_key("Node Type") {
                f(map);
            }
            for key in ["Plan", "Plans"] {
                if let Some(child) = map.get(key) {
                    walk(child, f);
                }
            }
        }
        _ => {}
    }
}
