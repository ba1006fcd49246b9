//! The statements of the seed application's workload, their weights, and one client running them.
//!
//! Modelled on the seed's DATABASE_OPTIMIZATION_SUMMARY.md: each statement is one its indexes
//! exist for (the index name is beside it). All values are bind parameters, so every statement
//! is one fingerprint however its values vary, as an ORM would send it.

use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio_postgres::{Client, Statement};

/// The kinds of work, in the order of `SQL` and the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The dashboard's headline numbers, identical every time: the result cache's case.
    HotDashboard,
    ActiveLeads,
    HotLeads,
    PropertySearch,
    ListingPage,
    LeadUpdate,
    NewConversation,
    /// Ten recent leads, then one conversations query per lead: the planted N+1.
    NPlusOne,
}

pub const KINDS: [Kind; 8] = [
    Kind::HotDashboard,
    Kind::ActiveLeads,
    Kind::HotLeads,
    Kind::PropertySearch,
    Kind::ListingPage,
    Kind::LeadUpdate,
    Kind::NewConversation,
    Kind::NPlusOne,
];

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::HotDashboard => "hot dashboard summary (cacheable)",
            Kind::ActiveLeads => "active leads by recency and score",
            Kind::HotLeads => "hot leads (score >= 7)",
            Kind::PropertySearch => "property search by price/bedrooms/bathrooms",
            Kind::ListingPage => "listing page",
            Kind::LeadUpdate => "lead score update",
            Kind::NewConversation => "new conversation",
            Kind::NPlusOne => "N+1: leads then conversations per lead",
        }
    }

    /// Relative frequency: reads are about 80% of statements, as the seed says of its app.
    fn weight(self) -> u32 {
        match self {
            Kind::HotDashboard => 24,
            Kind::ActiveLeads => 14,
            Kind::HotLeads => 10,
            Kind::PropertySearch => 18,
            Kind::ListingPage => 10,
            Kind::LeadUpdate => 8,
            Kind::NewConversation => 6,
            Kind::NPlusOne => 2,
        }
    }

    fn pick(rng: &mut impl Rng) -> Kind {
        let total: u32 = KINDS.iter().map(|k| k.weight()).sum();
        let mut at = rng.gen_range(0..total);
        for k in KINDS {
            if at < k.weight() {
                return k;
            }
            at -= k.weight();
        }
        Kind::HotDashboard
    }
}

/// Leads in the N+1 loop's parent query, so each burst is this many child queries.
pub const N_PLUS_ONE_CHILDREN: i64 = 10;

const HOT_DASHBOARD: &str =
    "SELECT status, count(*) AS leads, round(avg(ml_score), 2) AS avg_score \
     FROM leads GROUP BY status ORDER BY status";
// idx_leads_created_scored
const ACTIVE_LEADS: &str =
    "SELECT id, contact_id, name, email, phone, ml_score, created_at FROM leads \
     WHERE status = 'active' ORDER BY created_at DESC, ml_score DESC LIMIT $1";
// idx_leads_hot_leads
const HOT_LEADS: &str = "SELECT id, contact_id, name, ml_score, created_at FROM leads \
     WHERE status = 'active' AND ml_score >= 7 ORDER BY ml_score DESC, created_at DESC LIMIT $1";
// idx_properties_search_common
const PROPERTY_SEARCH: &str =
    "SELECT id, address, city, price, bedrooms, bathrooms, property_type \
     FROM properties WHERE status = 'Active' AND price BETWEEN $1::int8 AND $2::int8 \
     AND bedrooms >= $3::int2 AND bathrooms >= $4::int4 ORDER BY price LIMIT 50";
// idx_properties_listing_page
const LISTING_PAGE: &str =
    "SELECT id, address, bedrooms, bathrooms, sqft, property_type, neighborhood, price \
     FROM properties WHERE status = 'Active' ORDER BY created_at DESC LIMIT 20 OFFSET $1";
const LEAD_UPDATE: &str =
    "UPDATE leads SET ml_score = $1::float8, updated_at = now() WHERE id = $2";
const NEW_CONVERSATION: &str = "INSERT INTO conversations \
     (tenant_id, contact_id, channel, stage, score, message_count, last_message_at) \
     VALUES ($1, $2, $3, 'initial', $4::float8, 1, now())";
// idx_leads_created_scored, then conversations_contact_id_idx once per lead
const N1_PARENT: &str = "SELECT id, contact_id, name FROM leads WHERE status = 'active' \
     ORDER BY created_at DESC LIMIT $1";
const N1_CHILD: &str = "SELECT id, channel, score, last_message_at FROM conversations \
     WHERE contact_id = $1 ORDER BY last_message_at DESC NULLS LAST LIMIT 5";

/// Ids and keys that exist in the seeded data, read once before the clients start.
pub struct Universe {
    pub max_lead_id: i64,
    pub contact_ids: Vec<String>,
    pub property_count: i64,
}

impl Universe {
    /// The mix updates leads `1..=mixed_leads()`; the rest belong to the consistency check, whose
    /// rows must have one writer: another client's UPDATE that started before the check's and
    /// committed after it would store an older `now()` and look like a stale read.
    pub fn mixed_leads(&self) -> i64 {
        (self.max_lead_id - self.checked_leads().count() as i64).max(1)
    }

    /// The leads only the consistency check writes: the newest tenth, at most 64.
    pub fn checked_leads(&self) -> std::ops::RangeInclusive<i64> {
        let n = (self.max_lead_id / 10).clamp(1, 64);
        (self.max_lead_id - n + 1).max(1)..=self.max_lead_id.max(1)
    }
}

/// Per-kind counts, shared by every client.
#[derive(Default)]
pub struct Tally {
    pub done: [AtomicU64; 8],
    pub errors: [AtomicU64; 8],
    pub statements: AtomicU64,
}

struct Prepared {
    hot_dashboard: Statement,
    active_leads: Statement,
    hot_leads: Statement,
    property_search: Statement,
    listing_page: Statement,
    lead_update: Statement,
    new_conversation: Statement,
    n1_parent: Statement,
    n1_child: Statement,
}

/// One client's loop: weighted random kinds until `until`.
pub async fn client(
    c: Client,
    universe: &Universe,
    tally: &Tally,
    until: Instant,
    seed: u64,
) -> Result<(), tokio_postgres::Error> {
    use rand::SeedableRng;
    let p = Prepared {
        hot_dashboard: c.prepare(HOT_DASHBOARD).await?,
        active_leads: c.prepare(ACTIVE_LEADS).await?,
        hot_leads: c.prepare(HOT_LEADS).await?,
        property_search: c.prepare(PROPERTY_SEARCH).await?,
        listing_page: c.prepare(LISTING_PAGE).await?,
        lead_update: c.prepare(LEAD_UPDATE).await?,
        new_conversation: c.prepare(NEW_CONVERSATION).await?,
        n1_parent: c.prepare(N1_PARENT).await?,
        n1_child: c.prepare(N1_CHILD).await?,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    while Instant::now() < until {
        let kind = Kind::pick(&mut rng);
        let (ok, statements) = match run_one(&c, &p, kind, universe, &mut rng).await {
            Ok(n) => (true, n),
            Err(e) => {
                let error = super::describe(&e);
                tracing::debug!(kind = kind.label(), error, "workload statement failed");
                if c.is_closed() {
                    return Err(e);
                }
                (false, 1)
            }
        };
        let i = kind as usize;
        if ok {
            tally.done[i].fetch_add(1, Ordering::Relaxed);
        } else {
            tally.errors[i].fetch_add(1, Ordering::Relaxed);
        }
        tally.statements.fetch_add(statements, Ordering::Relaxed);
    }
    Ok(())
}

/// Runs one unit of `kind`; returns how many statements it sent.
async fn run_one(
    c: &Client,
    p: &Prepared,
    kind: Kind,
    u: &Universe,
    rng: &mut impl Rng,
) -> Result<u64, tokio_postgres::Error> {
    match kind {
        Kind::HotDashboard => {
            c.query(&p.hot_dashboard, &[]).await?;
        }
        Kind::ActiveLeads => {
            c.query(&p.active_leads, &[&25i64]).await?;
        }
        Kind::HotLeads => {
            c.query(&p.hot_leads, &[&20i64]).await?;
        }
        Kind::PropertySearch => {
            let low: i64 = rng.gen_range(1..15) * 50_000;
            let high = low + rng.gen_range(2..8) * 50_000;
            let beds: i16 = rng.gen_range(1..5);
            let baths: i32 = rng.gen_range(1..4);
            c.query(&p.property_search, &[&low, &high, &beds, &baths])
                .await?;
        }
        Kind::ListingPage => {
            let pages = (u.property_count / 20).clamp(1, 50);
            let offset = rng.gen_range(0..pages) * 20;
            c.query(&p.listing_page, &[&offset]).await?;
        }
        Kind::LeadUpdate => {
            let id = rng.gen_range(1..=u.mixed_leads());
            let score = (rng.gen_range(0.0..10.0f64) * 100.0).round() / 100.0;
            c.execute(&p.lead_update, &[&score, &id]).await?;
        }
        Kind::NewConversation => {
            let Some(contact) = pick(&u.contact_ids, rng) else {
                return Ok(0);
            };
            let tenant = format!("tenant-{}", rng.gen_range(1..=5));
            let channel = ["sms", "email", "call", "chat"][rng.gen_range(0..4)];
            let score = (rng.gen_range(0.0..10.0f64) * 100.0).round() / 100.0;
            c.execute(&p.new_conversation, &[&tenant, contact, &channel, &score])
                .await?;
        }
        Kind::NPlusOne => {
            // What an ORM's lazy relation does: one query per parent row, each with its own id.
            let leads = c.query(&p.n1_parent, &[&N_PLUS_ONE_CHILDREN]).await?;
            for lead in &leads {
                let contact: String = lead.try_get(1)?;
                c.query(&p.n1_child, &[&contact]).await?;
            }
            return Ok(1 + leads.len() as u64);
        }
    }
    Ok(1)
}

fn pick<'a, T>(items: &'a [T], rng: &mut impl Rng) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[rng.gen_range(0..items.len())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_kind_is_picked_and_reads_dominate() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut seen = [0u32; 8];
        for _ in 0..10_000 {
            seen[Kind::pick(&mut rng) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
        let writes = seen[Kind::LeadUpdate as usize] + seen[Kind::NewConversation as usize];
        assert!((1000..2000).contains(&writes), "{seen:?}");
    }
}
