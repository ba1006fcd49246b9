-- 001_performance_indexes: the seed's 16 performance indexes and validate_performance_indexes().
--
-- Every CREATE INDEX here is CONCURRENTLY (no write lock on the table), so `pgsplit migrate`
-- runs each one alone, outside any transaction, and polls pg_stat_progress_create_index. If a
-- build is interrupted it leaves an INVALID index with the same name, which IF NOT EXISTS would
-- silently keep; the runner detects that (pg_index.indisvalid = false), drops it CONCURRENTLY and
-- builds it again. Version 001 is recorded only after all of them are valid.
--
-- Runner directive: a comment line `-- pgsplit:requires <extension>` directly above a statement
-- makes the runner run that statement only when the extension is installed in the database
-- (pg_extension); otherwise it prints a NOTICE, records the skip in schema_migrations.skipped,
-- and runs the statement on a later `pgsplit migrate` once the extension is there. A DO block
-- cannot do this, because CREATE INDEX CONCURRENTLY cannot run inside one.
--
-- Names and definitions follow the seed's rollback list. The seed gives full definitions for
-- 1-3 and 5-8; the others ("additional" property, conversation and interaction indexes) are
-- designed from its descriptions and marked "designed:". The seed's prose counts 4 lead and 5
-- conversation/interaction indexes, but its rollback list (the names used here) has 5 on leads,
-- 2 on conversations and 2 on property_interactions: still 16 in all.

-- One row per index of this migration. `required` is false for the PostGIS index when PostGIS is
-- not installed, so a database without PostGIS can still report "all required present and valid".
CREATE OR REPLACE FUNCTION validate_performance_indexes()
RETURNS TABLE (
    index_name   text,
    table_name   text,
    index_exists boolean,
    is_valid     boolean,
    is_ready     boolean,
    size_bytes   bigint,
    scans        bigint,
    required     boolean
)
LANGUAGE sql STABLE
AS $$
    SELECT e.index_name,
           e.table_name,
           c.oid IS NOT NULL,
           coalesce(i.indisvalid, false),
           coalesce(i.indisready, false),
           coalesce(pg_relation_size(c.oid), 0),
           coalesce(s.idx_scan, 0),
           e.index_name <> 'idx_properties_location_price'
               OR EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'postgis')
    FROM (VALUES
        (1, 'idx_leads_created_scored', 'leads'),
        (2, 'idx_leads_score_status_created', 'leads'),
        (3, 'idx_leads_hot_leads', 'leads'),
        (4, 'idx_leads_search_gin', 'leads'),
        (5, 'idx_leads_status_updated', 'leads'),
        (6, 'idx_properties_location_price', 'properties'),
        (7, 'idx_properties_location_btree', 'properties'),
        (8, 'idx_properties_search_common', 'properties'),
        (9, 'idx_properties_listing_page', 'properties'),
        (10, 'idx_properties_featured', 'properties'),
        (11, 'idx_properties_amenities_gin', 'properties'),
        (12, 'idx_properties_location_text', 'properties'),
        (13, 'idx_conversations_tenant_contact_enhanced', 'conversations'),
        (14, 'idx_conversations_recent_high_score', 'conversations'),
        (15, 'idx_property_interactions_analysis', 'property_interactions'),
        (16, 'idx_property_interactions_popularity', 'property_interactions')
    ) AS e (ord, index_name, table_name)
    LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident(e.index_name)) AND c.relkind = 'i'
    LEFT JOIN pg_index i ON i.indexrelid = c.oid
    LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = c.oid
    ORDER BY e.ord
$$;

-- 1. Dashboard: active leads by recency then score.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_leads_created_scored
    ON leads (created_at DESC, ml_score DESC)
    WHERE status = 'active';

-- 2. Lead dashboards served by index-only scans.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_leads_score_status_created
    ON leads (ml_score DESC, status, created_at DESC)
    INCLUDE (contact_id, name, email, phone);

-- 3. Hot leads (score >= 7).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_leads_hot_leads
    ON leads (ml_score DESC, created_at DESC)
    WHERE status = 'active' AND ml_score >= 7;

-- 4. Full-text lead search by name, email and phone. Queries must repeat this expression
--    exactly to use the index (see control::critical::LEAD_SEARCH).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_leads_search_gin
    ON leads USING GIN (to_tsvector('english'::regconfig,
        coalesce(name, '') || ' ' || coalesce(email, '') || ' ' || coalesce(phone, '')));

-- 5. designed: follow-up queues, "leads in status X, most recently touched first".
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_leads_status_updated
    ON leads (status, updated_at DESC);

-- 6. Proximity plus budget overlap in one GiST probe; needs PostGIS for ST_MakePoint/geometry.
-- pgsplit:requires postgis
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_properties_location_price
    ON properties USING GiST (ST_MakePoint(longitude, latitude), price_range)
    WHERE status = 'Active';

-- 7. Location queries without PostGIS (bounding box on latitude/longitude, then price).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_properties_location_btree
    ON properties (latitude, longitude, price)
    WHERE status = 'Active' AND latitude IS NOT NULL;

-- 8. Common search: price range plus bedrooms/bathrooms.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_properties_search_common
    ON properties (price, bedrooms, bathrooms, property_type, status)
    WHERE status = 'Active';

-- 9. Listing pages served by index-only scans.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_properties_listing_page
    ON properties (created_at DESC, price)
    INCLUDE (address, bedrooms, bathrooms, sqft, property_type, neighborhood)
    WHERE status = 'Active';

-- 10. designed: the featured carousel, newest first; featured listings are a few percent.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_properties_featured
    ON properties (created_at DESC)
    WHERE featured AND status = 'Active';

-- 11. designed: amenity filters, amenities @> ARRAY['pool'] (GIN, default array operator class).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_properties_amenities_gin
    ON properties USING GIN (amenities);

-- 12. designed: location text search ("zilker 78704"). 'simple' because place names must not be
--     stemmed; full text rather than pg_trgm so no extension is needed.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_properties_location_text
    ON properties USING GIN (to_tsvector('simple'::regconfig,
        address || ' ' || coalesce(neighborhood, '') || ' ' || city || ' ' || state || ' ' || zip));

-- 13. designed: a contact's conversations in a tenant, newest first, covering the fields the
--     conversation list shows ("enhanced" over a plain (tenant_id, contact_id) index).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_conversations_tenant_contact_enhanced
    ON conversations (tenant_id, contact_id, created_at DESC)
    INCLUDE (score, stage, channel);

-- 14. designed: the recent high-scoring conversations (score >= 7) across a tenant's leads.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_conversations_recent_high_score
    ON conversations (created_at DESC, score DESC)
    WHERE score >= 7;

-- 15. designed: behaviour analysis, one lead's interactions by type over time.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_property_interactions_analysis
    ON property_interactions (lead_id, interaction_type, created_at DESC);

-- 16. designed: property popularity, interactions per listing over a recent window.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_property_interactions_popularity
    ON property_interactions (property_id, created_at DESC)
    INCLUDE (interaction_type);
