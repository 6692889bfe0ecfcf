"""The state replicas share in Redis: clients of one server, of a master behind Sentinel or of
a Cluster, made from the config, and how a write is known to have reached the replicas."""
