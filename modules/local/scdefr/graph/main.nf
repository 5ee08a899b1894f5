// Every name that reaches the shell is single-quoted: sample and file names may hold spaces, quotes, ';'
def shellQuoted(value) {
    return "'" + value.toString().replace("'", "'\\''") + "'"
}

process SCDEFR_GRAPH {
    tag "${meta.id}"
    label 'process_low'

    conda "${moduleDir}/environment.yml"
    container 'scdefr/graph:0.2.0'

    input:
    tuple val(meta), path(h5ad)

    output:
    tuple val(meta), path("${prefix}.graph.h5ad"), emit: h5ad
    tuple val("${task.process}"), val('scdefr'), eval('scdefr_graph.py --version | sed "s/^scdefr //"'), emit: versions_scdefr, topic: versions
    tuple val("${task.process}"), val('scanpy'), eval('python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" scanpy'), emit: versions_scanpy, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix   = task.ext.prefix ?: "${meta.id}"
    """
    scdefr_graph.py \\
        --input ${shellQuoted(h5ad)} \\
        --output ${shellQuoted("${prefix}.graph.h5ad")} \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${shellQuoted("${prefix}.graph.h5ad")}
    """
}
