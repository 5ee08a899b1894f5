// Every name that reaches the shell is single-quoted: sample and file names may hold spaces, quotes, ';'
def shellQuoted(value) {
    return "'" + value.toString().replace("'", "'\\''") + "'"
}

process SCDEFR_TRAIN {
    tag "${meta.id}"
    label 'process_medium'
    label 'process_gpu'

    conda "${moduleDir}/environment.yml"
    // task.accelerator is set by the 'gpu' profile: the CUDA image and --device cuda go together
    container "${task.accelerator ? 'scdefr/train-cuda:0.2.0' : 'scdefr/train:0.2.0'}"

    input:
    tuple val(meta), path(h5ad)

    output:
    tuple val(meta), path("${prefix}.trained.h5ad"), emit: h5ad
    tuple val(meta), path("${prefix}.model.pt")    , emit: model
    tuple val("${task.process}"), val('scdefr'), eval('scdefr_train.py --version | sed "s/^scdefr //"'), emit: versions_scdefr, topic: versions
    tuple val("${task.process}"), val('torch'), eval('python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" torch'), emit: versions_torch, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def device = task.accelerator ? 'cuda' : 'cpu'
    prefix     = task.ext.prefix ?: "${meta.id}"
    """
    scdefr_train.py \\
        --input ${shellQuoted(h5ad)} \\
        --output ${shellQuoted("${prefix}.trained.h5ad")} \\
        --model-out ${shellQuoted("${prefix}.model.pt")} \\
        --device ${device} \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${shellQuoted("${prefix}.trained.h5ad")} ${shellQuoted("${prefix}.model.pt")}
    """
}
