"""Producer stage: publish contract events to Kafka with kafka-python."""
