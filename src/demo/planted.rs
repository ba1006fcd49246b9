//! `pgsplit workload --mode planted`: a fixed script with known N+1 loops planted among independent lookups, so the detector's findings can be checked exactly.
//!
//! Planted: a loop over a join key (interleaved with unrelated statements), a loop over a column
//! that is no key (its values repeat), and a loop spread over a pool of connections under one
//! W3C traceparent. Around them, a clean mix of what applications do all the time: a list query
//! followed by lookups whose values never came from its rows. The report must name the three
//! loops, each with its data flow and fix, and nothing else.

use rand::Rng;
use tokio_postgres::Client;

/// One planted loop and what the report must say about it.
#[derive(Clone, Copy, Debug)]
pub struct PlantedLoop {
    pub name: &'static str,
    /// A piece of the child statement's text that names it.
    pub child: &'static str,
    /// The finding's `flow`.
    pub flow: &'static str,
    /// A piece of the suggested fix.
    pub fix: &'static str,
}

pub const LOOPS: [PlantedLoop; 3] = [
    PlantedLoop {
        name: "join key: the conversations of each lead, interleaved with other statements",
        child: "FROM conversations WHERE contact_id = $1",
        flow: "conversations.contact_id takes leads.contact_id",
        fix: "contact_id = ANY($1)",
    },
    PlantedLoop {
        name: "non-key column: listings in each listing's city",
        child: "FROM properties WHERE city = $1",
        flow: "properties.city takes properties.city",
        fix: "city = ANY($1)",
    },
    PlantedLoop {
        name: "over a pool of connections under one traceparent: the interactions of each hot lead",
        child: "FROM property_interactions WHERE lead_id = $1",
        flow: "property_interactions.lead_id takes leads.id",
        fix: "lead_id = ANY($1)",
    },
];

/// Connections the traced loop is spread over (each sees fewer children than the threshold).
pub const POOL: usize = 5;

const LEADS: &str =
    "SELECT id, contact_id, name FROM leads WHERE status = 'active' ORDER BY id LIMIT $1";
const CONVERSATIONS: &str = "SELECT id, channel, score FROM conversations \
     WHERE contact_id = $1 ORDER BY id LIMIT 5";
const LISTINGS: &str = "SELECT id, city, price FROM properties ORDER BY id LIMIT $1";
const SAME_CITY: &str = "SELECT id, price FROM properties WHERE city = $1 ORDER BY price LIMIT 3";
const HOT_LEADS: &str = "SELECT id, contact_id FROM leads ORDER BY ml_score DESC, id LIMIT $1";
const INTERACTIONS: &str = "SELECT id, property_id, interaction_type FROM property_interactions \
     WHERE lead_id = $1 ORDER BY id LIMIT 5";
// The clean mix: list queries, then lookups with values of their own.
const RECENT_LEADS: &str =
    "SELECT id, name, ml_score FROM leads ORDER BY created_at DESC, id LIMIT $1";
const PROPERTY_BY_ID: &str = "SELECT id, address, price FROM properties WHERE id = $1";
const LEAD_BY_ID: &str = "SELECT id, name, email FROM leads WHERE id = $1";
const PROPERTY_SEARCH: &str = "SELECT id, address, price, bedrooms FROM properties \
     WHERE bedrooms >= $1::int2 AND price <= $2::int8 ORDER BY price LIMIT 20";
const COUNT_BY_BEDROOMS: &str = "SELECT count(*) FROM properties WHERE bedrooms >= $1::int2";

/// Children per loop: above the default threshold (10) in one loop.
const CHILDREN: i64 = 12;

/// Runs `rounds` rounds of the script over `clients` (at least [`POOL`]); returns the
/// statements sent.
pub async fn run(
    clients: &[Client],
    rounds: u64,
    max_lead_id: i64,
    max_property_id: i64,
    seed: u64,
) -> Result<u64, tokio_postgres::Error> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let c = &clients[0];
    let mut sent = 0u64;
    for round in 0..rounds {
        // Parents vary their LIMIT, so no round repeats one with the same parameters.
        let limit = CHILDREN + (round % 3) as i64;

        // 1. Join key, interleaved with an unrelated count every third child.
        let leads = c.query(LEADS, &[&limit]).await?;
        sent += 1;
        for (i, lead) in leads.iter().enumerate() {
            let contact: String = lead.try_get(1)?;
            c.query(CONVERSATIONS, &[&contact]).await?;
            sent += 1;
            if i % 3 == 2 {
                let beds: i16 = rng.gen_range(1..5);
                c.query(COUNT_BY_BEDROOMS, &[&beds]).await?;
                sent += 1;
            }
        }

        // The clean mix: a list, then lookups by random ids and searches by random values.
        let listed = c.query(RECENT_LEADS, &[&(20 + round as i64 % 5)]).await?;
        sent += 1;
        for _ in 0..listed.len().min(15) {
            let id: i64 = rng.gen_range(1..=max_property_id);
            c.query(PROPERTY_BY_ID, &[&id]).await?;
            let id: i64 = rng.gen_range(1..=max_lead_id);
            c.query(LEAD_BY_ID, &[&id]).await?;
            sent += 2;
        }
        c.query(LISTINGS, &[&(20 + round as i64 % 5)]).await?;
        sent += 1;
        for _ in 0..15 {
            let beds: i16 = rng.gen_range(1..5);
            let price: i64 = rng.gen_range(2..20) * 50_000;
            c.query(PROPERTY_SEARCH, &[&beds, &price]).await?;
            sent += 1;
        }

        // 2. A column that is no key: one query per listing for the listings in its city.
        let listings = c.query(LISTINGS, &[&limit]).await?;
        sent += 1;
        for l in &listings {
            let city: String = l.try_get(1)?;
            c.query(SAME_CITY, &[&city]).await?;
            sent += 1;
        }

        // 3. Over a pool, one trace: the parent on one connection, the children spread.
        let trace = format!(
            "/*traceparent='00-{:032x}-{:016x}-01'*/",
            rng.gen::<u128>() | 1,
            rng.gen::<u64>() | 1
        );
        let hot = c
            .query(&format!("{HOT_LEADS} {trace}"), &[&(limit + 3)])
            .await?;
        sent += 1;
        let child = format!("{INTERACTIONS} {trace}");
        for (i, lead) in hot.iter().enumerate() {
            let id: i64 = lead.try_get(0)?;
            clients[i % POOL.min(clients.len())]
                .query(&child, &[&id])
                .await?;
            sent += 1;
        }
    }
    Ok(sent)
}
