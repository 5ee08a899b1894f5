// Every name that reaches the shell is single-quoted: sample and file names may hold spaces, quotes, ';'
def shellQuoted(value) {
    return "'" + value.toString().replace("'", "'\\''") + "'"
}

process SCDEFR_EXPORT {
    tag "${meta.id}"
    label 'process_single'

    conda "${moduleDir}/environment.yml"
    container 'scdefr/export:0.2.0'

    input:
    tuple val(meta), path(h5ad)

    output:
    tuple val(meta), path("${prefix}.h5ad")          , emit: h5ad
    tuple val(meta), path("${prefix}.clusters.csv")  , emit: clusters
    tuple val(meta), path("${prefix}.embedding.csv") , emit: embedding
    tuple val(meta), path("${prefix}.metrics.json")  , emit: metrics
    tuple val(meta), path("${prefix}.*.png")         , emit: plots
    tuple val(meta), path("${prefix}_*mqc.*")        , emit: multiqc
    tuple val("${task.process}"), val('scdefr'), eval('scdefr_export.py --version | sed "s/^scdefr //"'), emit: versions_scdefr, topic: versions
    tuple val("${task.process}"), val('scanpy'), eval('python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" scanpy'), emit: versions_scanpy, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix   = task.ext.prefix ?: "${meta.id}"
    """
    scdefr_export.py \\
        --input ${shellQuoted(h5ad)} \\
        --outdir . \\
        --prefix ${shellQuoted(prefix)} \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    for suffix in .h5ad .clusters.csv .embedding.csv .metrics.json .umap.png .loss.png .cluster_sizes.png _mqc.tsv; do
        touch ${shellQuoted(prefix)}"\${suffix}"
    done
    """
}
