"""Stratum V1 server: framing, sessions, jobs, share checks, vardiff, bans."""
