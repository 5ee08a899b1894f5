#!/usr/bin/env nextflow
/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    scdefr/scdefr: scDEFR single-cell clustering
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    nextflow run . -profile docker --input samplesheet.csv --outdir results
    nextflow run . -profile docker --input counts.h5ad --sample pbmc --outdir results
    Usage, profiles and outputs: docs/usage.md
----------------------------------------------------------------------------------------
*/

include { SCDEFR_PIPELINE                                    } from './workflows/scdefr'
include { validateParameters; paramsSummaryLog; samplesheetToList } from 'plugin/nf-schema'

/*
 * A boolean param as the user meant it: under the strict parser a command-line value stays the
 * string 'true' or 'false' (and 'false' is truthy in Groovy); a config or params-file value is a Boolean.
 */
def isTrue(value) {
    return value?.toString()?.toLowerCase() == 'true'
}

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
 * [ meta, counts ] as the steps expect them: meta.id a string (nf-schema reads the sample '1' as
 * the integer 1) of letters, digits, '.', '_' and '-' (it names files and folders), and no empty
 * values (nf-schema gives [] for an empty optional column). Anything else stops the run with one line.
 */
def checkedSamples(samples, source) {
    return samples.collect { meta, counts ->
        def id = meta.id?.toString() ?: ''
        if (!(id ==~ /[A-Za-z0-9][A-Za-z0-9._-]*/)) {
            error("Sample name ${id.inspect()} (from ${source}) may only contain letters, digits, '.', '_' and '-', starting with a letter or digit")
        }
        [ meta.findAll { _key, value -> value != null && value != [] } + [ id: id ], counts ]
    }
}

/*
 * [ meta, counts ] per sample: meta.id, and meta.label_key / meta.n_clusters when the samplesheet
 * gives them (the params apply otherwise, see conf/modules.config).
 */
def samplesFrom(String inputPath, sampleName) {
    def input = file(inputPath, checkIfExists: true)
    if (isSamplesheet(input)) {
        return checkedSamples(samplesheetToList(inputPath, "${projectDir}/assets/schema_input.json"), inputPath)
    }
    def source = sampleName ? '--sample' : "the file name ${input.name.inspect()}; set --sample to name it"
    return checkedSamples([ [ [ id: sampleName ?: input.simpleName ], input ] ], source)
}

workflow {

    main:
    if (isTrue(params.validate_params)) {
        validateParameters()
    }
    log.info paramsSummaryLog(workflow)

    SCDEFR_PIPELINE (
        channel.fromList(samplesFrom(params.input, params.sample)),
        isTrue(params.skip_multiqc),
        params.outdir,
    )
}
