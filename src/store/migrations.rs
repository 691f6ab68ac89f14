//! The schema, as numbered migrations that each run once, in a transaction. Times are
//! `BIGINT` milliseconds, dates `TEXT`, JSON `TEXT`, keys `TEXT`, so that SQLite and
//! PostgreSQL run the same statements.

/// The numbered migrations; never edit one that has shipped, add the next.
pub(super) const MIGRATIONS: &[(i64, &str, &[&str])] = &[
    (
        1,
        "customers, events, suppressions, schedule fires",
        &[
            "CREATE TABLE customers (
            id TEXT PRIMARY KEY,
            email TEXT NOT NULL,
            first_name TEXT,
            last_name TEXT,
            locale TEXT,
            timezone TEXT,
            birthday TEXT,
            created_at BIGINT,
            last_order_at BIGINT,
            orders_count BIGINT NOT NULL DEFAULT 0,
            total_spent DOUBLE PRECISION NOT NULL DEFAULT 0,
            tags TEXT NOT NULL DEFAULT '[]',
            unsubscribed_at BIGINT,
            attributes TEXT NOT NULL DEFAULT '{}',
            updated_at BIGINT NOT NULL
        )",
            "CREATE INDEX customers_email ON customers (email)",
            "CREATE TABLE events (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL REFERENCES customers (id),
            name TEXT NOT NULL,
            at BIGINT NOT NULL,
            properties TEXT NOT NULL DEFAULT '{}',
            changes TEXT NOT NULL DEFAULT '{}',
            recorded_at BIGINT NOT NULL,
            processed_at BIGINT
        )",
            "CREATE INDEX events_unprocessed ON events (processed_at, at)",
            "CREATE INDEX events_by_customer ON events (customer_id, name, at)",
            "CREATE TABLE suppressions (
            email TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
            "CREATE TABLE schedule_fires (
            workflow TEXT NOT NULL,
            fire_at BIGINT NOT NULL,
            processed_at BIGINT NOT NULL,
            PRIMARY KEY (workflow, fire_at)
        )",
        ],
    ),
    (
        2,
        "enrollments, the outbox, coupons",
        &[
            "CREATE TABLE enrollments (
            id TEXT PRIMARY KEY,
            workflow TEXT NOT NULL,
            customer_id TEXT NOT NULL REFERENCES customers (id),
            trigger_key TEXT NOT NULL,
            state TEXT NOT NULL,
            step TEXT,
            due_at BIGINT,
            entered_at BIGINT NOT NULL,
            ended_at BIGINT,
            exit_reason TEXT,
            event_id TEXT,
            orders_count_at_entry BIGINT NOT NULL,
            total_spent_at_entry DOUBLE PRECISION NOT NULL,
            error TEXT,
            version BIGINT NOT NULL DEFAULT 0,
            UNIQUE (workflow, customer_id, trigger_key)
        )",
            "CREATE INDEX enrollments_due ON enrollments (state, due_at)",
            "CREATE INDEX enrollments_by_customer ON enrollments (customer_id, workflow, entered_at)",
            "CREATE TABLE deliveries (
            id TEXT PRIMARY KEY,
            channel TEXT NOT NULL,
            enrollment_id TEXT NOT NULL REFERENCES enrollments (id),
            workflow TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            step TEXT NOT NULL,
            class TEXT NOT NULL,
            mode TEXT NOT NULL,
            recipient TEXT NOT NULL,
            subject TEXT,
            html TEXT,
            text TEXT,
            payload TEXT,
            coupon_code TEXT,
            message_id TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts BIGINT NOT NULL DEFAULT 0,
            due_at BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            sent_at BIGINT,
            last_error TEXT
        )",
            "CREATE INDEX deliveries_pending ON deliveries (state, due_at)",
            "CREATE INDEX deliveries_by_customer ON deliveries (customer_id, created_at)",
            "CREATE TABLE coupons (
            code TEXT PRIMARY KEY,
            delivery_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            workflow TEXT NOT NULL,
            expires_at BIGINT NOT NULL,
            state TEXT NOT NULL
        )",
        ],
    ),
    (
        3,
        "delivery leases",
        &[
            "ALTER TABLE deliveries ADD COLUMN lease_until BIGINT",
            "CREATE INDEX suppressions_reason ON suppressions (created_at)",
        ],
    ),
    (
        4,
        "settings kept by the store",
        &["CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)"],
    ),
    (
        5,
        "lifecycle stages",
        &[
            "ALTER TABLE customers ADD COLUMN stage TEXT",
            "ALTER TABLE customers ADD COLUMN stage_since BIGINT",
        ],
    ),
    (
        6,
        "leases on due journeys",
        &["ALTER TABLE enrollments ADD COLUMN lease_until BIGINT"],
    ),
    (
        7,
        "indexes for what every pass looks up",
        &[
            // The zones a `timezone: customer` schedule fires in, read every pass.
            "CREATE INDEX customers_timezone ON customers (timezone)",
            // Birthday candidates by month and day (`date: birthday`), read every pass.
            "CREATE INDEX customers_birthday_day ON customers ((substr(birthday, 6, 5)))",
        ],
    ),
    (
        8,
        "what a delivery carries, in a table of its own",
        &[
            // A sending email changes state two or three times; with its HTML and text in
            // the row, SQLite rewrote ~8 KB of overflow pages each time.
            "CREATE TABLE delivery_bodies (
            delivery_id TEXT PRIMARY KEY REFERENCES deliveries (id),
            html TEXT,
            text TEXT,
            payload TEXT
        )",
            "INSERT INTO delivery_bodies (delivery_id, html, text, payload) SELECT id, html, text, payload FROM deliveries",
            "ALTER TABLE deliveries DROP COLUMN html",
            "ALTER TABLE deliveries DROP COLUMN text",
            "ALTER TABLE deliveries DROP COLUMN payload",
        ],
    ),
    (
        9,
        "due journeys and emails in the order they are claimed",
        &[
            // Claims take the oldest due journeys `ORDER BY due_at, id`: without `id` in the
            // index, every claim sorted all the journeys due at one moment (a campaign's
            // 100,000) to take 500 of them.
            "DROP INDEX enrollments_due",
            "CREATE INDEX enrollments_due ON enrollments (state, due_at, id)",
            // The sender's claims, oldest first, one waiting state at a time: without them,
            // each claim (and each look for `at_most_once` mail) read every queued email.
            // Partial, so that a sent email leaves them and costs them nothing more.
            "CREATE INDEX deliveries_queued ON deliveries (channel, mode, due_at, id) WHERE state = 'pending'",
            "CREATE INDEX deliveries_retrying ON deliveries (channel, mode, due_at, id) WHERE state = 'retrying'",
        ],
    ),
    (
        10,
        "what an event said, to tell a retry from a reused key",
        &["ALTER TABLE events ADD COLUMN fingerprint TEXT"],
    ),
    (
        11,
        "when the event that triggered an email was accepted",
        &[
            // An email its event made due at once carries the event's acceptance time,
            // so that the sender can tell how long it took to hand the email over.
            "ALTER TABLE deliveries ADD COLUMN accepted_at BIGINT",
        ],
    ),
    (
        12,
        "engagement: clicks, opens, answers, unsubscribes and bounces per email; waits for an event",
        &[
            // One row per thing a customer did with an email, credited to the email's
            // delivery (and so its workflow, step and enrollment). The `events` row beside
            // it is what workflows react to; this is what rates and `clicked()` read, with
            // plain columns that both stores index and count alike. An answer's id is its
            // email and question, so that a later answer replaces the earlier one.
            "CREATE TABLE engagements (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            delivery_id TEXT NOT NULL,
            enrollment_id TEXT NOT NULL,
            workflow TEXT NOT NULL,
            step TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            detail TEXT,
            value TEXT,
            comment TEXT,
            machine BIGINT NOT NULL DEFAULT 0,
            at BIGINT NOT NULL,
            client TEXT
        )",
            "CREATE INDEX engagements_by_delivery ON engagements (delivery_id, kind, at)",
            "CREATE INDEX engagements_by_customer ON engagements (customer_id, kind)",
            "CREATE INDEX engagements_by_workflow ON engagements (workflow, step, kind)",
            // A journey waiting for an event (`wait: {for, at_most}`): the event's name and
            // since when, so that an event of that name after it resumes the journey.
            "ALTER TABLE enrollments ADD COLUMN waiting_for TEXT",
            "ALTER TABLE enrollments ADD COLUMN waiting_since BIGINT",
            "CREATE INDEX enrollments_waiting ON enrollments (customer_id, waiting_for)",
        ],
    ),
    (
        13,
        "experiments: variants, conversions, coupons redeemed",
        &[
            // `SPLIT/VARIANT` (or `holdout`) the journey was sent down, and the one each
            // email was composed in (the `X-Tidings-Variant` header).
            "ALTER TABLE enrollments ADD COLUMN variant TEXT",
            "ALTER TABLE deliveries ADD COLUMN variant TEXT",
            // A goal event credited to the journey whose workflow sent the customer's
            // latest email before it (last touch), once per event.
            "CREATE TABLE conversions (
            event_id TEXT PRIMARY KEY,
            enrollment_id TEXT NOT NULL,
            workflow TEXT NOT NULL,
            variant TEXT,
            step TEXT,
            customer_id TEXT NOT NULL,
            value DOUBLE PRECISION NOT NULL DEFAULT 0,
            at BIGINT NOT NULL
        )",
            "CREATE INDEX conversions_by_workflow ON conversions (workflow, variant)",
            "CREATE INDEX conversions_by_customer ON conversions (customer_id)",
            "ALTER TABLE coupons ADD COLUMN redeemed_at BIGINT",
            "CREATE INDEX deliveries_by_customer_sent ON deliveries (customer_id, sent_at)",
        ],
    ),
    (
        14,
        "topics a customer opted out of",
        &[
            // One row per customer and topic opted out of (its id is the two, joined by a
            // line break); marketing mail of that topic is not sent to them. Opting out of
            // everything is `customers.unsubscribed_at`.
            "CREATE TABLE topic_optouts (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            topic TEXT NOT NULL,
            at BIGINT NOT NULL
        )",
            "CREATE INDEX topic_optouts_by_customer ON topic_optouts (customer_id)",
        ],
    ),
    (
        15,
        "a customer's redeemed coupons found without reading every coupon",
        &[
            // What `redeemed()` reads with a customer's history, for every journey of a
            // workflow that asks: without it each read scanned the whole coupons table.
            "CREATE INDEX coupons_redeemed_by_customer ON coupons (customer_id, redeemed_at) WHERE redeemed_at IS NOT NULL",
        ],
    ),
    (
        HASHED_SUPPRESSIONS,
        "the suppression list keeps a hash of each address, not the address",
        // No statement: the hashing is Rust's (`suppressions::hash_stored_addresses`),
        // run by the migration runner when it applies this version.
        &[],
    ),
    (
        17,
        "customers not placed in a stage yet found without a scan",
        // Every pass places the customers an import or the API added since (they have no
        // stage until then): this keeps that look proportional to them, not to the store.
        &["CREATE INDEX customers_unstaged ON customers (id) WHERE stage IS NULL"],
    ),
    (
        18,
        "events too old when first seen are marked: they started no journey",
        &["ALTER TABLE events ADD COLUMN too_old INTEGER NOT NULL DEFAULT 0"],
    ),
    (
        19,
        "the shop's orders, each customer's first order, and the sources' cursors",
        &[
            // The shop's orders, upserted by id: each customer's order figures are derived
            // from the counted ones (`counted` is 0 for a cancelled or refunded order).
            "CREATE TABLE orders (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            total DOUBLE PRECISION NOT NULL DEFAULT 0,
            currency TEXT,
            status TEXT NOT NULL,
            coupon TEXT,
            placed_at BIGINT NOT NULL,
            lines TEXT NOT NULL DEFAULT '[]',
            extra TEXT NOT NULL DEFAULT '{}',
            counted INTEGER NOT NULL DEFAULT 1,
            fingerprint TEXT NOT NULL,
            recorded_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        )",
            "CREATE INDEX orders_by_customer ON orders (customer_id, placed_at)",
            "ALTER TABLE customers ADD COLUMN first_order_at BIGINT",
            // Where each source's feed (`customers`, `orders`) has read up to: the last
            // row's `updated_at` and id as the shop's database gave them (JSON), moved in
            // the transaction that writes the rows it covers.
            "CREATE TABLE source_cursors (
            source TEXT NOT NULL,
            feed TEXT NOT NULL,
            position TEXT,
            rows_read BIGINT NOT NULL DEFAULT 0,
            rows_refused BIGINT NOT NULL DEFAULT 0,
            last_run_at BIGINT,
            caught_up_at BIGINT,
            last_error TEXT,
            last_error_at BIGINT,
            PRIMARY KEY (source, feed)
        )",
        ],
    ),
];

/// The migration after which suppressed addresses are kept as hashes.
pub(super) const HASHED_SUPPRESSIONS: i64 = 16;
