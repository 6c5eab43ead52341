-- The departments' own stores on the single-host installation: each department keeps its own data model,
-- and onceonly.yaml maps entity fields to these columns. Runs once, when the data volume is empty.
CREATE DATABASE housing_fund;
CREATE DATABASE tax;
CREATE DATABASE hukou;  -- public_security's system of record (the outbox source's example)

\connect housing_fund
CREATE TABLE gjj_grxx (
    sfzhm text PRIMARY KEY,  -- ID number
    xm    text,              -- name
    dz    text,              -- address
    zt    text               -- status: 'deceased' when a death ends the record
);

\connect tax
CREATE TABLE taxpayer (
    id_number    text PRIMARY KEY,
    name         text,
    district     text,
    address      text,
    deregistered boolean NOT NULL DEFAULT false
);
CREATE TABLE enterprise (
    uscc           text PRIMARY KEY,
    name           text,
    representative text,
    address        text,
    status         text,
    deregistered   boolean NOT NULL DEFAULT false
);

\connect hukou
-- public_security's application writes a row here in the same transaction as its own change (the outbox pattern);
-- the source hukou-outbox publishes it and sets sent_at. Columns as connectors.sources.outbox_table.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    aggregate_type varchar(64) NOT NULL,
    aggregate_id   varchar(128) NOT NULL,
    payload        text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz
);
CREATE INDEX ix_outbox_unsent ON outbox (sent_at, id);
