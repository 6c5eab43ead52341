-- The departments' own stores on the single-host installation: each department keeps its own data model,
-- and onceonly.yaml maps entity fields to these columns. Runs once, when the data volume is empty.
CREATE DATABASE housing_fund;
CREATE DATABASE tax;

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
