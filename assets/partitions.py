"""One partition per source in the sources file, registered dynamically.

``python -m assets.partitions`` registers the sources of the configured sources file in the
current DAGSTER_HOME instance and prints their names (``make demo`` uses it before it
materializes each partition through the Dagster CLI); ``sources_sensor`` does the same in a
running deployment.
"""


from dagster import DagsterInstance, DynamicPartitionsDefinition

from integrity.ingest import load_sources

sources_partitions = DynamicPartitionsDefinition(name="sources")


def register_sources(instance: DagsterInstance, sources_file: str) -> list[str]:
    """Add every source of ``sources_file`` as a partition; returns all source names."""
    names = [source.name for source in load_sources(sources_file)]
    known = set(instance.get_dynamic_partitions(sources_partitions.name))
    instance.add_dynamic_partitions(sources_partitions.name, [n for n in names if n not in known])
    return names


if __name__ == "__main__":
    from assets.resources import IntegrityResource, environment_value

    print("\n".join(register_sources(DagsterInstance.get(), environment_value("integrity", "sources_file", IntegrityResource().sources_file))))
