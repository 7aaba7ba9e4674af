-- Who may see or change a report folder or a dashboard (seed 002: report_folder_permissions,
-- dashboard_permissions). One row per (object, user); the owner needs no row.
CREATE TABLE report_folder_permissions (
    folder_id  uuid NOT NULL REFERENCES report_folders (folder_id) ON DELETE CASCADE,
    user_id    uuid NOT NULL,
    permission text NOT NULL CHECK (permission IN ('view', 'edit', 'admin')),
    granted_by uuid,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (folder_id, user_id)
);
-- "What can this user see?" is the hot query: by user.
CREATE INDEX report_folder_permissions_user_idx ON report_folder_permissions (user_id, folder_id);

CREATE TABLE dashboard_permissions (
    dashboard_id uuid NOT NULL REFERENCES dashboards (dashboard_id) ON DELETE CASCADE,
    user_id      uuid NOT NULL,
    permission   text NOT NULL CHECK (permission IN ('view', 'edit', 'admin')),
    granted_by   uuid,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dashboard_id, user_id)
);
CREATE INDEX dashboard_permissions_user_idx ON dashboard_permissions (user_id, dashboard_id);

-- Row-level security on the report tables (seed 002, phase 2.1: "report-related tables
-- with proper indexes and RLS"). The application sets the user of each request with
-- `SET app.user_id = '<uuid>'` (Supabase's auth.uid()); without it a session sees no row.
-- Table owners (this migration, ferry) bypass RLS; application roles do not.
-- A folder is visible to its owner and to users with a permission row; editable by its
-- owner and users with 'edit' or 'admin'. A report is visible when public, owned, or in a
-- visible folder; its snapshots and versions follow the report.
ALTER TABLE report_folders ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_folder_permissions ENABLE ROW LEVEL SECURITY;
ALTER TABLE saved_reports ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_data_snapshots ENABLE ROW LEVEL SECURITY;
ALTER TABLE report_version_history ENABLE ROW LEVEL SECURITY;

CREATE POLICY report_folders_select ON report_folders FOR SELECT USING (
    owner_id = nullif(current_setting('app.user_id', true), '')::uuid
    OR EXISTS (SELECT 1 FROM report_folder_permissions p
                WHERE p.folder_id = report_folders.folder_id
                  AND p.user_id = nullif(current_setting('app.user_id', true), '')::uuid));
CREATE POLICY report_folders_insert ON report_folders FOR INSERT WITH CHECK (
    owner_id = nullif(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY report_folders_update ON report_folders FOR UPDATE USING (
    owner_id = nullif(current_setting('app.user_id', true), '')::uuid
    OR EXISTS (SELECT 1 FROM report_folder_permissions p
                WHERE p.folder_id = report_folders.folder_id
                  AND p.user_id = nullif(current_setting('app.user_id', true), '')::uuid
                  AND p.permission IN ('edit', 'admin')));
CREATE POLICY report_folders_delete ON report_folders FOR DELETE USING (
    owner_id = nullif(current_setting('app.user_id', true), '')::uuid);

-- A user sees their own permission rows; the folder's owner sees and manages them. The
-- owner is read through a SECURITY DEFINER function: a policy on report_folder_permissions
-- querying report_folders, whose policy queries report_folder_permissions, would recurse.
CREATE FUNCTION report_folder_owner(folder uuid) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT owner_id FROM report_folders WHERE folder_id = folder $$;
CREATE POLICY report_folder_permissions_select ON report_folder_permissions FOR SELECT USING (
    user_id = nullif(current_setting('app.user_id', true), '')::uuid
    OR report_folder_owner(folder_id) = nullif(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY report_folder_permissions_manage ON report_folder_permissions FOR ALL USING (
    report_folder_owner(folder_id) = nullif(current_setting('app.user_id', true), '')::uuid);

CREATE POLICY saved_reports_select ON saved_reports FOR SELECT USING (
    is_public
    OR owner_id = nullif(current_setting('app.user_id', true), '')::uuid
    OR EXISTS (SELECT 1 FROM report_folders f WHERE f.folder_id = saved_reports.folder_id));
CREATE POLICY saved_reports_insert ON saved_reports FOR INSERT WITH CHECK (
    owner_id = nullif(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY saved_reports_update ON saved_reports FOR UPDATE USING (
    owner_id = nullif(current_setting('app.user_id', true), '')::uuid);
CREATE POLICY saved_reports_delete ON saved_reports FOR DELETE USING (
    owner_id = nullif(current_setting('app.user_id', true), '')::uuid);

CREATE POLICY report_data_snapshots_select ON report_data_snapshots FOR SELECT USING (
    EXISTS (SELECT 1 FROM saved_reports r WHERE r.report_id = report_data_snapshots.report_id));
CREATE POLICY report_data_snapshots_write ON report_data_snapshots FOR ALL USING (
    EXISTS (SELECT 1 FROM saved_reports r WHERE r.report_id = report_data_snapshots.report_id
               AND r.owner_id = nullif(current_setting('app.user_id', true), '')::uuid));

CREATE POLICY report_version_history_select ON report_version_history FOR SELECT USING (
    EXISTS (SELECT 1 FROM saved_reports r WHERE r.report_id = report_version_history.report_id));
CREATE POLICY report_version_history_write ON report_version_history FOR ALL USING (
    EXISTS (SELECT 1 FROM saved_reports r WHERE r.report_id = report_version_history.report_id
               AND r.owner_id = nullif(current_setting('app.user_id', true), '')::uuid));
