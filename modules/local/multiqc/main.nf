// Every name that reaches the shell is single-quoted: sample and file names may hold spaces, quotes, ';'
def shellQuoted(value) {
    return "'" + value.toString().replace("'", "'\\''") + "'"
}

process MULTIQC {
    tag 'all samples'
    label 'process_single'

    conda "${moduleDir}/environment.yml"
    container 'community.wave.seqera.io/library/multiqc:1.35--c17fb751507e9dfc'

    input:
    path multiqc_files, stageAs: '?/*'
    path multiqc_config

    output:
    path "multiqc_report.html", emit: report
    path "multiqc_data"       , emit: data
    // Not on the versions topic: this step waits for that topic to close, so it cannot add to it
    tuple val("${task.process}"), val('multiqc'), eval('multiqc --version | sed "s/.* //"'), emit: versions_multiqc

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    multiqc \\
        --force \\
        --config ${shellQuoted(multiqc_config)} \\
        ${args} \\
        .
    """

    stub:
    """
    mkdir multiqc_data
    touch multiqc_report.html
    """
}
