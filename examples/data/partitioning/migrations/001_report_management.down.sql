DROP TABLE IF EXISTS report_version_history;
DROP TABLE IF EXISTS report_data_snapshots;
DROP TABLE IF EXISTS saved_reports;
DROP TABLE IF EXISTS report_folders;
