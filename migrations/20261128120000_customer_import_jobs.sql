-- Customer imports from the console: a file is validated (nothing written but this row, and only
-- for a file without errors), then imported by a background job in batches, each batch committed
-- with the job's progress, so a crash loses at most the batch in flight and any instance resumes
-- the job where its last batch ended.
--
-- Placement on Citus (src/db/sharding.rs): local, on the coordinator only (a Citus local table).
-- A job belongs to no customer, so it has no shard key; as a reference table its file (up to
-- IMPORT_BODY_LIMIT_BYTES) would be copied to every worker and every progress update would write
-- every node, while only the service reads it, through the coordinator every instance connects to.
create table customer_import_jobs (
    id                    uuid        primary key,
    file_name             text        not null check (length(file_name) between 1 and 255),
    format                text        not null check (format in ('ndjson', 'csv')),
    -- The validated file, byte for byte; dropped when the job is done (counts and hash remain).
    file                  bytea,
    file_sha256           bytea       not null check (length(file_sha256) = 32),
    -- Customer lines (not blank lines, not the CSV header).
    total_lines           integer     not null check (total_lines > 0),
    -- What validation found.
    validated_by          uuid        not null references users (id),
    validated_at          timestamptz not null default now(),
    found_imported        integer     not null check (found_imported between 0 and total_lines),
    without_reference     integer     not null check (without_reference between 0 and total_lines),
    -- The first lines found already imported: [{line, external_reference, customer_id}].
    found_imported_sample jsonb       not null default '[]',
    -- validated → queued (started) → running (leased by an instance) → done or failed.
    status                text        not null default 'validated'
        check (status in ('validated', 'queued', 'running', 'done', 'failed')),
    -- Who started the import: the actor of every customer it creates, with this request id.
    started_by            uuid        references users (id),
    started_at            timestamptz,
    request_id            text,
    -- Progress, committed with each batch: lines_done lines are written (created or skipped).
    lines_done            integer     not null default 0,
    created               integer     not null default 0 check (created >= 0),
    skipped               integer     not null default 0 check (skipped >= 0),
    -- The instance working on it, until when; another may take it over after that.
    leased_by             uuid,
    lease_expires_at      timestamptz,
    finished_at           timestamptz,
    failure               text,
    constraint customer_import_jobs_progress check (
        lines_done between 0 and total_lines and created + skipped = lines_done),
    constraint customer_import_jobs_started check (
        (status = 'validated') = (started_by is null) and (started_by is null) = (started_at is null)),
    constraint customer_import_jobs_leased check ((leased_by is null) = (lease_expires_at is null)),
    constraint customer_import_jobs_file_kept_until_finished check (
        (file is null) = (status in ('done', 'failed')))
);
-- Jobs waiting for or held by a worker, oldest first.
create index customer_import_jobs_pending_idx on customer_import_jobs (started_at, id)
    where status in ('queued', 'running');
-- The console's list of recent jobs, and "this file was imported before".
create index customer_import_jobs_recent_idx on customer_import_jobs (validated_at desc);
create index customer_import_jobs_file_idx on customer_import_jobs (file_sha256);
