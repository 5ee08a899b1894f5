//
// scDEFR clustering of every sample: qc -> graph -> train -> export, one task per sample and step.
// Samples run in parallel. Include it in another pipeline with
//
//     include { SCDEFR } from './subworkflows/local/scdefr/main'
//
// and give it a channel of [ meta, counts ] (meta.id required; meta.label_key and meta.n_clusters
// optional). conf/modules.config holds the matching ext.args/publishDir settings.
//
include { SCDEFR_QC     } from '../../../modules/local/scdefr/qc/main'
include { SCDEFR_GRAPH  } from '../../../modules/local/scdefr/graph/main'
include { SCDEFR_TRAIN  } from '../../../modules/local/scdefr/train/main'
include { SCDEFR_EXPORT } from '../../../modules/local/scdefr/export/main'

workflow SCDEFR {

    take:
    ch_counts // channel: [ val(meta), path(counts) ] counts: h5ad, 10x h5, 10x mtx folder or csv/tsv

    main:
    SCDEFR_QC ( ch_counts )
    SCDEFR_GRAPH ( SCDEFR_QC.out.h5ad )
    SCDEFR_TRAIN ( SCDEFR_GRAPH.out.h5ad )
    SCDEFR_EXPORT ( SCDEFR_TRAIN.out.h5ad )

    ch_versions = SCDEFR_QC.out.versions_scdefr
        .mix(SCDEFR_QC.out.versions_scanpy)
        .mix(SCDEFR_GRAPH.out.versions_scdefr)
        .mix(SCDEFR_GRAPH.out.versions_scanpy)
        .mix(SCDEFR_TRAIN.out.versions_scdefr)
        .mix(SCDEFR_TRAIN.out.versions_torch)
        .mix(SCDEFR_EXPORT.out.versions_scdefr)
        .mix(SCDEFR_EXPORT.out.versions_scanpy)

    emit:
    h5ad          = SCDEFR_EXPORT.out.h5ad                                  // channel: [ val(meta), path(h5ad) ] annotated AnnData
    clusters      = SCDEFR_EXPORT.out.clusters                              // channel: [ val(meta), path(clusters.csv) ]
    embedding     = SCDEFR_EXPORT.out.embedding                             // channel: [ val(meta), path(embedding.csv) ]
    metrics       = SCDEFR_EXPORT.out.metrics                               // channel: [ val(meta), path(metrics.json) ]
    model         = SCDEFR_TRAIN.out.model                                  // channel: [ val(meta), path(model.pt) ]
    multiqc_files = SCDEFR_EXPORT.out.multiqc.map { _meta, files -> files } // channel: [ path(*_mqc.*) ]
    versions      = ch_versions                                             // channel: [ val(process), val(tool), val(version) ]
}
