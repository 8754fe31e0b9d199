"""Bulk data: members migrated in from CSV/XLSX, points adjusted from a file, as resumable jobs."""
