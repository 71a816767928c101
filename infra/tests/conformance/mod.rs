//! Shared pieces of the conformance suite: the fixture each backend builds,
//! the case bodies, and the macro that expands them into tests.

pub mod blob_cases;
pub mod fixtures;
pub mod index_cases;
pub mod queue_cases;
pub mod store_cases;

pub use fixtures::Fixture;

/// Expands every case into one `#[tokio::test]` in a module named after the
/// backend, on `fixtures::<backend>()`. Add a case here once and every
/// backend runs it. Called by `runcache_testkit::each_backend!`.
#[macro_export]
macro_rules! conformance_suite {
    ($backend:ident [$($cfg:tt)*] {}) => {
        #[cfg(all($($cfg)*))]
        mod $backend {
            $crate::conformance_suite!(@cases $crate::conformance::fixtures::$backend;
                blob_cases::put_get_head_round_trip,
                blob_cases::missing_keys,
                blob_cases::range_reads,
                blob_cases::put_replaces_whole_object,
                blob_cases::copy_carries_bytes_and_metadata,
                blob_cases::list_by_prefix_in_pages,
                blob_cases::delete_many_ignores_missing,
                blob_cases::invalid_keys_are_refused,
                blob_cases::failed_put_leaves_nothing,
                blob_cases::large_blob_streams_with_bounded_memory,
                blob_cases::empty_blob_round_trip,
                blob_cases::etag_holds_until_the_bytes_are_replaced,
                index_cases::get_missing_is_none,
                index_cases::insert_then_get,
                index_cases::duplicate_insert_is_refused,
                index_cases::concurrent_inserts_exactly_one_wins,
                index_cases::prefix_newest_created_first,
                index_cases::prefix_is_scoped_and_versioned,
                index_cases::prefix_treats_wildcards_literally,
                index_cases::invalidated_entries_are_hidden,
                index_cases::state_changes_only_from_live,
                index_cases::record_access_counts,
                index_cases::queries_by_repository_toolchain_and_lockfile,
                index_cases::remove_and_scan_in_pages,
                index_cases::scan_returns_entries_not_audit_records,
                index_cases::entries_without_toolchain_or_lockfile_are_queryable,
                index_cases::audit_log_is_idempotent_and_newest_first,
                index_cases::search_order_exact_then_prefix_then_restore_keys,
                index_cases::search_falls_back_through_scopes,
                index_cases::search_never_crosses_branches_or_pull_requests,
                index_cases::search_never_matches_another_version,
                index_cases::search_respects_minimum_trust,
                index_cases::exact_search_matches_the_key_only_in_scope_order,
                index_cases::by_key_finds_the_key_in_every_ref_version_and_state,
                index_cases::list_prefix_includes_entries_that_are_not_live,
                queue_cases::send_receive_ack,
                queue_cases::empty_receive_returns_nothing,
                queue_cases::batch_receive_is_bounded,
                queue_cases::send_batch_delivers_every_message,
                queue_cases::redelivered_after_visibility_timeout,
                queue_cases::extend_visibility_keeps_message_hidden,
                queue_cases::dead_lettered_after_max_receives,
                queue_cases::explicit_dead_letter_keeps_reason,
                queue_cases::depth_counts_visible_in_flight_and_dead,
                store_cases::metrics_put_and_aggregate,
                store_cases::metrics_accept_large_batches,
                store_cases::metrics_series_cut_the_window_in_periods,
                store_cases::metrics_dimension_sets_name_every_recorded_set,
                store_cases::provenance_put_is_idempotent,
            );
        }
    };
    (@cases $fixture:path; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fx = $fixture().await;
                $crate::conformance::$module::$case(&fx).await;
            }
        )*
    };
}
