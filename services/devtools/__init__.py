"""Development and test tooling: start the whole system locally, find PostgreSQL and RabbitMQ."""
