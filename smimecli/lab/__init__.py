"""The lab CA: test roots, user certificates, CRLs (gen-root, issue-user, gen-ca)."""
