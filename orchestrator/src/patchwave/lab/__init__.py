"""The lab: a real test fleet of Debian containers with a signed apt repository."""
