/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    scdefr pipeline: the SCDEFR subworkflow on every sample, then one MultiQC report
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
*/

include { SCDEFR  } from '../subworkflows/local/scdefr/main'
include { MULTIQC } from '../modules/local/multiqc/main'

workflow SCDEFR_PIPELINE {

    take:
    ch_samples   // channel: [ val(meta), path(counts) ]
    skip_multiqc // boolean: no MultiQC report
    outdir       // string: the results folder (pipeline_info/ goes there)

    main:
    SCDEFR ( ch_samples )

    // Software versions of every step (the 'versions' topic), as one YAML file MultiQC also reads
    ch_collated_versions = channel.topic('versions')
        .unique()
        .map { process, tool, version -> [ process.tokenize(':')[-1], "    ${tool}: ${version}" ] }
        .groupTuple()
        .map { process, tools -> "${process}:\n${tools.unique().sort().join('\n')}" }
        .collectFile(
            storeDir: "${outdir}/pipeline_info",
            name    : 'scdefr_software_mqc_versions.yml',
            sort    : true,
            newLine : true,
        )

    ch_multiqc_report = channel.empty()
    if (!skip_multiqc) {
        MULTIQC (
            SCDEFR.out.multiqc_files.mix(ch_collated_versions).collect(),
            file("${projectDir}/assets/multiqc_config.yml", checkIfExists: true),
        )
        ch_multiqc_report = MULTIQC.out.report
    }

    emit:
    h5ad           = SCDEFR.out.h5ad     // channel: [ val(meta), path(h5ad) ]
    clusters       = SCDEFR.out.clusters // channel: [ val(meta), path(clusters.csv) ]
    multiqc_report = ch_multiqc_report   // channel: path(multiqc_report.html)
}
