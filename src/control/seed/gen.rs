//! Deterministic row generators writing COPY text format straight into a buffer.

use bytes::{BufMut, BytesMut};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::words::*;

const DAY: i64 = 86_400;

/// Picks from `items` with the given integer weights.
fn weighted<'a, T>(rng: &mut ChaCha8Rng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut pick = rng.gen_range(0..total);
    for (item, w) in items {
        if pick < *w {
            return item;
        }
        pick -= w;
    }
    &items[items.len() - 1].0
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[rng.gen_range(0..items.len())]
}

/// A timestamp `max_days` or fewer before `anchor`, skewed towards recent (activity grows).
fn recent(rng: &mut ChaCha8Rng, anchor: i64, max_days: i64) -> i64 {
    let u: f64 = rng.gen();
    anchor - (u.powf(1.5) * (max_days * DAY) as f64) as i64
}

/// Triangular 0..10 with two decimals: most scores mid-range, about one in six >= 7.
fn score(rng: &mut ChaCha8Rng) -> String {
    format!("{:.2}", (rng.gen::<f64>() + rng.gen::<f64>()) * 5.0)
}

/// One COPY text row: fields separated by tabs, `\N` for NULL, backslash escapes.
pub struct Row<'a> {
    buf: &'a mut BytesMut,
    first: bool,
}

impl<'a> Row<'a> {
    pub fn new(buf: &'a mut BytesMut) -> Self {
        Row { buf, first: true }
    }

    fn sep(&mut self) {
        if !self.first {
            self.buf.put_u8(b'\t');
        }
        self.first = false;
    }

    pub fn text(mut self, value: &str) -> Self {
        self.sep();
        for b in value.bytes() {
            match b {
                b'\\' => self.buf.put_slice(b"\\\\"),
                b'\t' => self.buf.put_slice(b"\\t"),
                b'\n' => self.buf.put_slice(b"\\n"),
                b'\r' => self.buf.put_slice(b"\\r"),
                _ => self.buf.put_u8(b),
            }
        }
        self
    }

    pub fn opt(self, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    pub fn null(mut self) -> Self {
        self.sep();
        self.buf.put_slice(b"\\N");
        self
    }

    pub fn num(self, value: impl std::fmt::Display) -> Self {
        self.text(&value.to_string())
    }

    pub fn ts(self, epoch: i64) -> Self {
        self.text(&timestamp(epoch))
    }

    pub fn end(self) {
        self.buf.put_u8(b'\n');
    }
}

/// `YYYY-MM-DD HH:MM:SS+00` for Unix seconds (proleptic Gregorian, Howard Hinnant's algorithm).
pub fn timestamp(epoch: i64) -> String {
    let (days, secs) = (epoch.div_euclid(DAY), epoch.rem_euclid(DAY));
    let (y, m, d) = crate::civil::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Unix seconds at midnight UTC of a civil date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    crate::civil::days_from_civil(y, m, d) * DAY
}

pub const LEAD_COLUMNS: &str =
    "id, contact_id, name, email, phone, status, ml_score, source, budget_min, budget_max, created_at, updated_at";

/// Writes one lead and returns its contact_id, which conversations reference.
pub fn lead(rng: &mut ChaCha8Rng, id: u64, anchor: i64, buf: &mut BytesMut) -> String {
    let first = pick(rng, FIRST_NAMES);
    // One lead in 400 gets the rare surname the lead-search critical query looks for.
    let last = if rng.gen_ratio(1, 400) {
        RARE_LAST_NAME
    } else {
        pick(rng, LAST_NAMES)
    };
    let email = rng.gen_ratio(19, 20).then(|| {
        format!(
            "{}.{}{}@{}",
            first.to_lowercase(),
            last.to_lowercase(),
            rng.gen_range(1..100),
            pick(rng, EMAIL_DOMAINS)
        )
    });
    let phone = rng.gen_ratio(9, 10).then(|| {
        let area = pick(rng, &["512", "737", "254", "830"]);
        format!(
            "+1 {area}-{:03}-{:04}",
            rng.gen_range(200..1000),
            rng.gen_range(0..10_000)
        )
    });
    let status = weighted(
        rng,
        &[
            ("new", 20),
            ("contacted", 15),
            ("active", 35),
            ("qualified", 10),
            ("nurturing", 10),
            ("closed", 5),
            ("lost", 5),
        ],
    );
    let budget_min = rng.gen_range(30..180) * 5_000;
    let budget_max = budget_min + rng.gen_range(10..60) * 5_000;
    let created = recent(rng, anchor, 730);
    let updated = created + rng.gen_range(0..=(anchor - created).max(0));
    let contact_id = format!("ct{id:07}{:06x}", rng.gen_range(0..0x100_0000));
    Row::new(buf)
        .num(id)
        .text(&contact_id)
        .text(&format!("{first} {last}"))
        .opt(email.as_deref())
        .opt(phone.as_deref())
        .text(status)
        .text(&score(rng))
        .text(pick(rng, LEAD_SOURCES))
        .num(budget_min)
        .num(budget_max)
        .ts(created)
        .ts(updated)
        .end();
    contact_id
}

pub const PROPERTY_COLUMNS: &str =
    "id, address, city, state, zip, neighborhood, price, bedrooms, bathrooms, sqft, \
     property_type, status, latitude, longitude, featured, amenities, created_at, updated_at";

pub fn property(rng: &mut ChaCha8Rng, id: u64, anchor: i64, buf: &mut BytesMut) {
    let (city, lat, lon, per_sqft, zips, hoods) = CITIES[rng.gen_range(0..CITIES.len())];
    let kind = *weighted(
        rng,
        &[
            ("Single Family", 60),
            ("Condo", 15),
            ("Townhouse", 15),
            ("Multi-Family", 7),
            ("Land", 3),
        ],
    );
    let bedrooms: u32 = match kind {
        "Land" => 0,
        "Condo" => rng.gen_range(1..=3),
        "Multi-Family" => rng.gen_range(4..=8),
        _ => rng.gen_range(2..=6),
    };
    let bathrooms = if bedrooms == 0 {
        0.0
    } else {
        (f64::from(bedrooms) * 0.6 + rng.gen_range(0..3) as f64 * 0.5).max(1.0)
    };
    let bathrooms = (bathrooms * 2.0).round() / 2.0;
    let sqft = if kind == "Land" {
        None
    } else {
        Some(400 + bedrooms * 420 + rng.gen_range(0..900))
    };
    let price = match sqft {
        Some(s) => f64::from(s * per_sqft) * rng.gen_range(0.8..1.25),
        None => rng.gen_range(60_000.0..450_000.0),
    };
    let price = (price / 1000.0).round() * 1000.0;
    let status = weighted(
        rng,
        &[
            ("Active", 55),
            ("Pending", 15),
            ("Sold", 25),
            ("Off Market", 5),
        ],
    );
    let located = rng.gen_ratio(49, 50);
    let jitter = |rng: &mut ChaCha8Rng| (rng.gen::<f64>() + rng.gen::<f64>() - 1.0) * 0.08;
    let (latitude, longitude) = if located {
        (
            Some(format!("{:.6}", lat + jitter(rng))),
            Some(format!("{:.6}", lon + jitter(rng))),
        )
    } else {
        (None, None)
    };
    let amenities: Vec<&str> = AMENITIES
        .iter()
        .copied()
        .filter(|_| rng.gen_ratio(1, 4))
        .collect();
    let created = recent(rng, anchor, 365);
    let updated = created + rng.gen_range(0..=(anchor - created).max(0));
    let address = format!(
        "{} {} {}",
        rng.gen_range(100..9900),
        pick(rng, STREETS),
        pick(rng, STREET_SUFFIXES)
    );
    Row::new(buf)
        .num(id)
        .text(&address)
        .text(city)
        .text("TX")
        .text(pick(rng, zips))
        .text(pick(rng, hoods))
        .text(&format!("{price:.2}"))
        .num(bedrooms)
        .text(&format!("{bathrooms:.1}"))
        .opt(sqft.map(|s| s.to_string()).as_deref())
        .text(kind)
        .text(status)
        .opt(latitude.as_deref())
        .opt(longitude.as_deref())
        .text(if rng.gen_ratio(1, 25) { "t" } else { "f" })
        .text(&format!("{{{}}}", amenities.join(",")))
        .ts(created)
        .ts(updated)
        .end();
}

pub const CONVERSATION_COLUMNS: &str =
    "id, tenant_id, contact_id, channel, stage, score, message_count, \
     behavioral_preferences, last_message_at, created_at";

pub fn conversation(
    rng: &mut ChaCha8Rng,
    id: u64,
    contact_id: &str,
    anchor: i64,
    buf: &mut BytesMut,
) {
    let channel = weighted(
        rng,
        &[("sms", 50), ("email", 20), ("call", 15), ("chat", 15)],
    );
    let created = recent(rng, anchor, 365);
    let last = created + rng.gen_range(0..=(anchor - created).clamp(0, 30 * DAY));
    let areas: Vec<String> = CITIES
        .iter()
        .filter(|_| rng.gen_ratio(1, 4))
        .map(|c| format!("\"{}\"", c.0))
        .take(3)
        .collect();
    let prefs = format!(
        "{{\"budget_max\": {}, \"bedrooms_min\": {}, \"preferred_areas\": [{}], \"contact_time\": \"{}\", \
         \"response_speed\": \"{}\", \"pre_approved\": {}}}",
        rng.gen_range(40..200) * 5_000,
        rng.gen_range(1..=5),
        areas.join(", "),
        pick(rng, CONTACT_TIMES),
        pick(rng, &["fast", "same_day", "slow"]),
        rng.gen_bool(0.4),
    );
    Row::new(buf)
        .num(id)
        .text(pick(rng, TENANTS))
        .text(contact_id)
        .text(channel)
        .text(pick(rng, STAGES))
        .text(&score(rng))
        .num(rng.gen_range(1..60))
        .text(&prefs)
        .ts(last)
        .ts(created)
        .end();
}

pub const INTERACTION_COLUMNS: &str =
    "id, lead_id, property_id, interaction_type, duration_seconds, created_at";

pub fn interaction(
    rng: &mut ChaCha8Rng,
    id: u64,
    leads: u64,
    properties: u64,
    anchor: i64,
    buf: &mut BytesMut,
) {
    // Popularity is skewed: low property ids draw most of the traffic.
    let property = 1 + (rng.gen::<f64>().powi(2) * properties as f64) as u64;
    let kind = *weighted(
        rng,
        &[
            ("view", 60),
            ("save", 15),
            ("share", 5),
            ("inquiry", 10),
            ("tour_request", 7),
            ("offer", 3),
        ],
    );
    let duration = (kind == "view").then(|| rng.gen_range(5..600).to_string());
    Row::new(buf)
        .num(id)
        .num(rng.gen_range(1..=leads))
        .num(property.min(properties))
        .text(kind)
        .opt(duration.as_deref())
        .ts(recent(rng, anchor, 180))
        .end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn timestamps_round_trip_known_dates() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00+00");
        let jan10 = days_from_civil(2026, 1, 10);
        assert_eq!(timestamp(jan10 + 3661), "2026-01-10 01:01:01+00");
        assert_eq!(
            timestamp(days_from_civil(2024, 2, 29)),
            "2024-02-29 00:00:00+00"
        );
    }

    #[test]
    fn copy_text_escapes_separators_and_nulls() {
        let mut buf = BytesMut::new();
        Row::new(&mut buf).text("a\tb\\c\nd").null().num(3).end();
        assert_eq!(&buf[..], b"a\\tb\\\\c\\nd\t\\N\t3\n");
    }

    #[test]
    fn same_seed_same_rows() {
        let gen = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut buf = BytesMut::new();
            for i in 1..=50 {
                lead(&mut rng, i, days_from_civil(2026, 1, 10), &mut buf);
                property(&mut rng, i, days_from_civil(2026, 1, 10), &mut buf);
            }
            buf
        };
        assert_eq!(gen(7), gen(7));
        assert_ne!(gen(7), gen(8));
    }
}
