"""The Kinesis Client Library side: the MultiLangDaemon and its properties, the per-shard processor process
it starts, and the DynamoDB tables the KCL keeps (leases, leader lock).

`stream-processor consume` runs `consumer.run_consumer`; `status` and `replay` read `leases`. Modules are
imported by name: importing the package pulls in nothing.
"""
