"""Production artefacts rendered from the reviewed files (topic catalog, departments, agreements).

Kafka topics, users and ACLs are derived, never hand-written, so a reviewed change to the catalog or to an agreement
is the only way access changes: ``acls`` decides who may do what, ``strimzi`` and ``topics`` write it out for
Strimzi or for the stock Kafka tools.
"""

from onceonly.render.acls import Acl, Holders, render_acls
from onceonly.render.strimzi import kafka_topics, kafka_users
from onceonly.render.topics import kafka_topics_script, topics_listing

__all__ = ["Acl", "Holders", "kafka_topics", "kafka_topics_script", "kafka_users", "render_acls", "topics_listing"]
