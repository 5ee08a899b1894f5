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
    tuple val("${task.process}"), val('scdefr'), eval('scdefr --version | sed "s/^scdefr //"'), emit: versions_scdefr, topic: versions
    tuple val("${task.process}"), val('scanpy'), eval('python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" scanpy'), emit: versions_scanpy, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix   = task.ext.prefix ?: "${meta.id}"
    """
    scdefr_export.py \\
        --input ${h5ad} \\
        --outdir . \\
        --prefix ${prefix} \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.h5ad ${prefix}.clusters.csv ${prefix}.embedding.csv ${prefix}.metrics.json
    touch ${prefix}.umap.png ${prefix}.loss.png ${prefix}.cluster_sizes.png ${prefix}_mqc.tsv
    """
}
