-- Report management (seed 002, phase 2.1; the original 20250716_report_management_schema.sql).
-- Owners and grantees are user ids of the application's auth system (no users table here,
-- so no foreign key on them).
CREATE TABLE report_folders (
    folder_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    parent_folder_id uuid REFERENCES report_folders (folder_id) ON DELETE CASCADE,
    name             text NOT NULL CHECK (length(trim(name)) > 0),
    owner_id         uuid NOT NULL,
    program_id       uuid REFERENCES pilot_programs (program_id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- Folder names are unique among siblings (NULL parent = top level).
CREATE UNIQUE INDEX report_folders_parent_name_key
    ON report_folders (coalesce(parent_folder_id, '00000000-0000-0000-0000-000000000000'::uuid), lower(name));
CREATE INDEX report_folders_owner_idx ON report_folders (owner_id);

CREATE TABLE saved_reports (
    report_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    folder_id     uuid REFERENCES report_folders (folder_id) ON DELETE SET NULL,
    name          text NOT NULL,
    description   text,
    owner_id      uuid NOT NULL,
    program_id    uuid REFERENCES pilot_programs (program_id) ON DELETE SET NULL,
    report_type   text NOT NULL CHECK (report_type IN ('table', 'chart', 'pivot', 'map')),
    data_source   text NOT NULL CHECK (data_source IN ('petri_observations', 'gasifier_observations', 'submissions')),
    configuration jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_public     boolean NOT NULL DEFAULT false,
    current_version integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX saved_reports_folder_idx ON saved_reports (folder_id);
CREATE INDEX saved_reports_owner_idx ON saved_reports (owner_id);
CREATE INDEX saved_reports_program_idx ON saved_reports (program_id);

CREATE TABLE report_data_snapshots (
    snapshot_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    report_id   uuid NOT NULL REFERENCES saved_reports (report_id) ON DELETE CASCADE,
    data        jsonb NOT NULL,
    row_count   integer NOT NULL DEFAULT 0 CHECK (row_count >= 0),
    created_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX report_data_snapshots_report_created_idx ON report_data_snapshots (report_id, created_at DESC);

CREATE TABLE report_version_history (
    version_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    report_id     uuid NOT NULL REFERENCES saved_reports (report_id) ON DELETE CASCADE,
    version       integer NOT NULL CHECK (version > 0),
    configuration jsonb NOT NULL,
    changed_by    uuid,
    change_note   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (report_id, version)
);
