"""Members' data rights: consent per purpose, the export of everything held on a member,
erasure that keeps the ledger's amounts, and legal holds that stop an erasure."""
