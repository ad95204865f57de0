"""The client edge of the App API (SPEC §10): who is calling from where, and how often.
Checked before any metering: authentication with identity providers and attestation,
revocation, the failed-authentication cap per IP, request rates and open streams."""
