"""Flask entry points: Twilio webhooks and the health check.  Views stay thin."""
