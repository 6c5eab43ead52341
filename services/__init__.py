"""The platform's long-running services: registry, gateway, distributor, subscriber, operator."""
