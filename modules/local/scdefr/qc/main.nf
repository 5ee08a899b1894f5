// Every name that reaches the shell is single-quoted: sample and file names may hold spaces, quotes, ';'
def shellQuoted(value) {
    return "'" + value.toString().replace("'", "'\\''") + "'"
}

process SCDEFR_QC {
    tag "${meta.id}"
    label 'process_low'

    conda "${moduleDir}/environment.yml"
    container 'scdefr/qc:0.2.0'

    input:
    tuple val(meta), path(counts)

    output:
    tuple val(meta), path("${prefix}.qc.h5ad")        , emit: h5ad
    tuple val(meta), path("${prefix}.qc_summary.json"), emit: summary
    tuple val(meta), path("${prefix}.qc.png")         , emit: plot
    tuple val("${task.process}"), val('scdefr'), eval('scdefr_qc.py --version | sed "s/^scdefr //"'), emit: versions_scdefr, topic: versions
    tuple val("${task.process}"), val('scanpy'), eval('python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" scanpy'), emit: versions_scanpy, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix   = task.ext.prefix ?: "${meta.id}"
    """
    scdefr_qc.py \\
        --input ${shellQuoted(counts)} \\
        --output ${shellQuoted("${prefix}.qc.h5ad")} \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${shellQuoted("${prefix}.qc.h5ad")} ${shellQuoted("${prefix}.qc_summary.json")} ${shellQuoted("${prefix}.qc.png")}
    """
}
