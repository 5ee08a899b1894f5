#!/usr/bin/env nextflow
/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    scdefr: scDEFR single-cell clustering
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    nextflow run . -profile docker --input samplesheet.csv --outdir results
    nextflow run . -profile docker --input counts.h5ad --sample pbmc --outdir results
    Usage, profiles and outputs: docs/usage.md
----------------------------------------------------------------------------------------
*/

include { SCDEFR_PIPELINE                                    } from './workflows/scdefr'
include { validateParameters; paramsSummaryLog; samplesheetToList } from 'plugin/nf-schema'

/*
 * A samplesheet is a .csv whose header names the 'sample' and 'counts' columns; anything else
 * (h5ad, 10x h5, 10x mtx folder, a counts csv/tsv) is a single sample's counts.
 */
def isSamplesheet(input) {
    if (input.isDirectory() || !input.name.endsWith('.csv')) {
        return false
    }
    def header = input.withReader { reader -> reader.readLine() } ?: ''
    return header.tokenize(',')*.trim().containsAll(['sample', 'counts'])
}

/*
 * [ meta, counts ] per sample: meta.id, and meta.label_key / meta.n_clusters when the samplesheet
 * gives them (the params apply otherwise, see conf/modules.config).
 */
def samplesFrom(String inputPath) {
    def input = file(inputPath, checkIfExists: true)
    if (isSamplesheet(input)) {
        return channel.fromList(samplesheetToList(inputPath, "${projectDir}/assets/schema_input.json"))
    }
    return channel.of([ [ id: params.sample ?: input.simpleName ], input ])
}

workflow {

    main:
    if (params.validate_params) {
        validateParameters()
    }
    log.info paramsSummaryLog(workflow)

    SCDEFR_PIPELINE ( samplesFrom(params.input) )
}
